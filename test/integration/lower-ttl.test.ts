// lower_ttl=SECONDS bounds how long a change made to a lower branch underneath a mount stays
// unseen (lowers are immutable by contract; this is for those who cannot promise it). Through
// real mounts, read-only and writable: after the bound, a new lower file shows, a changed one
// reads its new content, a removed one is gone, a new entry in a listed directory is listed.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { withLayerfs } from '../helpers/mounts.js';

const space = scratch(test);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const writable of [false, true]) {
  test(`with lower_ttl=1 a change underneath shows within the bound (${writable ? 'writable' : 'read-only'})`, async (t) => {
    if (!requireMountCapable(t)) return;
    const root = await space.dir(`ttl-${writable ? 'rw' : 'ro'}`);
    const d = (n: string) => path.join(root, n);
    for (const n of ['top/dir', 'base', 'upper', 'work']) fs.mkdirSync(d(n), { recursive: true });
    fs.writeFileSync(d('top/changes'), 'old');
    fs.writeFileSync(d('top/goes'), 'here');
    fs.writeFileSync(d('base/stays'), 'base');
    const dirs = writable ? { lowers: [d('top'), d('base')], upper: d('upper'), work: d('work') } : { lowers: [d('top'), d('base')] };
    await withLayerfs({ ...dirs, options: ['lower_ttl=1'] }, async (mnt) => {
      const m = (n: string) => path.join(mnt, n);
      // Everything looked at once, so that the kernel and layerfs both hold it.
      t.is(fs.readFileSync(m('changes'), 'utf8'), 'old');
      t.true(fs.existsSync(m('goes')));
      t.false(fs.existsSync(m('new')));
      t.deepEqual(fs.readdirSync(m('dir')), []);
      fs.writeFileSync(d('top/changes'), 'new content'); // a different size and mtime
      fs.rmSync(d('top/goes'));
      fs.writeFileSync(d('base/new'), 'n');
      fs.writeFileSync(d('top/dir/inside'), 'i');
      await sleep(1600);
      t.is(fs.readFileSync(m('changes'), 'utf8'), 'new content');
      t.false(fs.existsSync(m('goes')));
      t.is(fs.readFileSync(m('new'), 'utf8'), 'n');
      t.deepEqual(fs.readdirSync(m('dir')), ['inside']);
      t.is(fs.readFileSync(m('stays'), 'utf8'), 'base');
    });
  });
}
