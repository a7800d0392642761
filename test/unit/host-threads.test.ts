// src/host/threads.ts (D65): in a server process V8's threads run at nice 19, libuv's pool and
// the main thread at the nice they had; LAYERFS_HELPER_NICE=0 leaves every thread alone.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { helperNice } from '../../src/host/threads.js';

const THREADS = fileURLToPath(new URL('../../src/host/threads.js', import.meta.url));

/** In a fresh Node (its pool started by a file read), lower the helpers; each thread's nice, in the order made. */
function nicesAfter(env: NodeJS.ProcessEnv): { main: number; others: number[] } {
  const script = `
    import * as fs from 'node:fs';
    import { helperNice, lowerHelperThreads } from ${JSON.stringify(THREADS)};
    await fs.promises.readFile('/proc/self/stat');
    lowerHelperThreads(helperNice());
    const nice = (t) => Number(fs.readFileSync('/proc/self/task/' + t + '/stat', 'utf8').split(') ')[1].split(' ')[16]);
    const tids = fs.readdirSync('/proc/self/task').map(Number).sort((a, b) => a - b);
    console.log(JSON.stringify({ main: nice(process.pid), others: tids.filter((t) => t !== process.pid).map(nice) }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as { main: number; others: number[] };
}

test('V8\'s threads go to nice 19; the main thread and the pool\'s (the last made) keep theirs', (t) => {
  const { main, others } = nicesAfter({ UV_THREADPOOL_SIZE: '6', LAYERFS_HELPER_NICE: '' });
  t.is(main, 0);
  t.true(others.length > 6, `V8's threads and a pool of 6: ${others.length} threads`);
  t.deepEqual(others.slice(-6), [0, 0, 0, 0, 0, 0], 'the pool keeps the main thread\'s nice');
  t.true(others.slice(0, -6).every((n) => n === 19), `V8's threads at 19: ${others.join(' ')}`);
});

test('LAYERFS_HELPER_NICE sets the value; 0 leaves every thread alone; a bad value is refused', (t) => {
  const { others } = nicesAfter({ UV_THREADPOOL_SIZE: '4', LAYERFS_HELPER_NICE: '0' });
  t.true(others.every((n) => n === 0));
  const ten = nicesAfter({ UV_THREADPOOL_SIZE: '4', LAYERFS_HELPER_NICE: '10' });
  t.true(ten.others.slice(0, -4).every((n) => n === 10));
  t.is(helperNice({}), 19);
  t.is(helperNice({ LAYERFS_HELPER_NICE: '7' }), 7);
  for (const bad of ['20', '-1', 'x', '1.5']) t.throws(() => helperNice({ LAYERFS_HELPER_NICE: bad }), { message: /LAYERFS_HELPER_NICE/ });
});
