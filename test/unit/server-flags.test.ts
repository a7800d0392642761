// src/mount-process.ts: the Node flags of a server the CLI or the API starts (D39).
import test from 'ava';
import { serverNodeFlags } from '../../src/mount-process.js';

test('a server gets a 4 MiB young generation, unless NODE_OPTIONS chose a size', (t) => {
  t.deepEqual(serverNodeFlags({}), ['--max-semi-space-size=4']);
  t.deepEqual(serverNodeFlags({ NODE_OPTIONS: '--max-old-space-size=512' }), ['--max-semi-space-size=4']);
  t.deepEqual(serverNodeFlags({ NODE_OPTIONS: '--max-semi-space-size=16' }), []);
  t.deepEqual(serverNodeFlags({ NODE_OPTIONS: '--enable-source-maps --max-semi-space-size=1' }), []);
});
