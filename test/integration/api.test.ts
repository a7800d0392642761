// The programmatic API and the stats of a running mount, through real mounts: mount() resolves
// once the union serves (from a child process, so this process may use the mount), stats() and
// `layerfs stats` count what was done through it (creates, copy-ups and their bytes, whiteouts,
// errors by code), unmount() leaves no mount, no server, no runtime files; a failed mount rejects
// with a typed error and leaves nothing; a mount ends with the process that made it unless it
// asked to persist. The package also loads by its name from ESM and from CommonJS.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LayerfsError, mount, type Mount } from '../../src/index.js';
import { socketFor, stateDir } from '../../src/host/runtime.js';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { REPO_ROOT, findFuseServerPid, layerfsCli, mountedFsType } from '../helpers/mounts.js';
import { run } from '../helpers/tree.js';
import { alive, until } from '../helpers/wait.js';

const space = scratch(test);

interface Layers { lower: string; upper: string; work: string; mnt: string; root: string }

const BIG = 100_000;

async function layers(name: string): Promise<Layers> {
  const root = await space.dir(name);
  const l: Layers = {
    root, lower: path.join(root, 'lower'), upper: path.join(root, 'upper'), work: path.join(root, 'work'), mnt: path.join(root, 'mnt'),
  };
  for (const d of [l.lower, l.upper, l.work, l.mnt, path.join(l.lower, 'etc')]) fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(l.lower, 'big'), Buffer.alloc(BIG, 'b'));
  fs.writeFileSync(path.join(l.lower, 'gone'), 'delete me\n');
  fs.writeFileSync(path.join(l.lower, 'etc', 'hostname'), 'base\n');
  return l;
}

/** Never leave a mount or a server behind, whatever a test did. */
async function cleanup(mnt: string, m?: Mount): Promise<void> {
  if (m !== undefined) await m.unmount().catch(() => undefined);
  if (mountedFsType(mnt) !== undefined) {
    await layerfsCli(['umount', mnt]).catch(() => undefined);
    if (mountedFsType(mnt) !== undefined) spawnSync('umount', ['-l', mnt]);
  }
  if (m !== undefined && alive(m.pid)) process.kill(m.pid, 'SIGKILL');
}

test('mount() serves at once; stats() and `layerfs stats` count what was done; unmount() leaves nothing', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('api');
  let m: Mount | undefined;
  try {
    m = await mount(l.mnt, { lowers: [l.lower], upper: l.upper, work: l.work });
    t.is(m.mountpoint, fs.realpathSync(l.mnt));
    t.is(mountedFsType(l.mnt), 'fuse.layerfs');
    t.true(alive(m.pid) && m.pid !== process.pid, 'served by another process');
    // Used from this process right away: the server is a child, so this cannot deadlock.
    t.is(fs.readFileSync(path.join(l.mnt, 'etc/hostname'), 'utf8'), 'base\n');

    const N = 7;
    for (let i = 0; i < N; i++) fs.writeFileSync(path.join(l.mnt, `new-${i}`), `${i}\n`);
    fs.appendFileSync(path.join(l.mnt, 'big'), 'more'); // a copy-up of the whole lower file
    fs.unlinkSync(path.join(l.mnt, 'gone')); // a whiteout
    t.throws(() => fs.statSync(path.join(l.mnt, 'no-such-file')), { code: 'ENOENT' });
    t.is(fs.statSync(path.join(l.upper, 'big')).size, BIG + 4);

    const s = await m.stats();
    t.is(s.mountpoint, m.mountpoint);
    t.is(s.pid, m.pid);
    t.true((s.ops.create?.count ?? 0) >= N, `creates: ${JSON.stringify(s.ops.create)}`);
    t.is(s.ops.create?.errors, 0);
    t.true((s.ops.unlink?.count ?? 0) >= 1);
    // (A lookup is "lookup" with the kernel engine, "getattr" through libfuse, which makes one of it.)
    t.true((s.ops.lookup?.errorCodes.ENOENT ?? s.ops.getattr?.errorCodes.ENOENT ?? 0) >= 1, 'the failed lookup is counted by its code');
    t.deepEqual(s.copyUps, { count: 1, bytes: BIG }, 'one copy-up, of the file data that was in the lower');
    t.deepEqual(s.whiteouts, { written: 1, opaqueDirs: 0 });
    for (const [op, o] of Object.entries(s.ops)) {
      t.true(o.count > 0, op);
      t.true(o.p50Micros <= o.p90Micros && o.p90Micros <= o.p99Micros && o.p99Micros <= o.maxMicros, `${op}: ${JSON.stringify(o)}`);
    }
    const r = s.cache.resolver;
    t.true(r.hits > 0 && r.misses > 0, JSON.stringify(r));
    t.is(r.hitRatio, r.hits / (r.hits + r.misses));

    // The CLI asks the same server, without stopping it.
    const table = await layerfsCli(['stats', l.mnt]);
    t.is(table.code, 0, table.stderr);
    t.regex(table.stdout, /^operation +count +errors +p50 +p90 +p99 +max/m);
    t.regex(table.stdout, /^create +\d+ +0 /m);
    t.regex(table.stdout, /^copy-ups: 1 \(97\.7 KiB/m);
    t.regex(table.stdout, /^whiteouts written: 1;/m);
    const json = await layerfsCli(['stats', '--json', l.mnt]);
    t.is(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as typeof s;
    t.true(parsed.ops.create!.count >= N);
    t.deepEqual(parsed.copyUps, s.copyUps);
    t.is(fs.readFileSync(path.join(l.mnt, 'new-3'), 'utf8'), '3\n', 'still serving after being asked');

    const pid = m.pid;
    await m.unmount();
    await m.ended;
    t.is(mountedFsType(l.mnt), undefined);
    t.false(alive(pid), 'the server has exited');
    t.false(fs.existsSync(socketFor(m.mountpoint)), 'no control socket left');
    t.deepEqual(fs.readdirSync(stateDir()).filter((f) => f.includes(encodeURIComponent(m!.mountpoint))), [], 'no runtime record left');
    await m.unmount(); // a second unmount is a no-op
    const after = await m.stats().then(() => undefined, (e: unknown) => e);
    t.true(after instanceof LayerfsError && after.code === 'NOT_MOUNTED', String(after));
  } finally {
    await cleanup(l.mnt, m);
  }
});

test('a failed mount rejects with a typed error and leaves nothing', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('bad');
  const cases: Array<[string, () => Promise<Mount>]> = [
    ['a missing lowerdir', () => mount(l.mnt, { lowers: [path.join(l.root, 'missing')] })],
    ['upper without work', () => mount(l.mnt, { lowers: [l.lower], upper: l.upper })],
    ['an unknown kernel option', () => mount(l.mnt, { lowers: [l.lower], fuseOptions: ['bogus'] })],
    ['a smuggled option', () => mount(l.mnt, { lowers: [l.lower], fuseOptions: ['noatime,upperdir=/'] })],
  ];
  for (const [what, attempt] of cases) {
    const e = await attempt().then(
      async (m) => {
        await cleanup(l.mnt, m);
        return undefined;
      },
      (err: unknown) => err,
    );
    t.true(e instanceof LayerfsError, `${what}: ${String(e)}`);
    t.is((e as LayerfsError).code, 'CONFIG', what);
    t.is(mountedFsType(l.mnt), undefined, what);
    t.is(findFuseServerPid(l.mnt), undefined, `${what}: no server left`);
  }
  const missing = await mount(l.mnt, { lowers: [path.join(l.root, 'missing')] }).catch((e: unknown) => e);
  t.regex((missing as Error).message, /lowerdir .*missing: no such directory/);
  const cli = await layerfsCli(['stats', l.mnt]);
  t.is(cli.code, 1);
  t.regex(cli.stderr, /^layerfs: .*mnt: no layerfs server answers for it/);
});

/** Run a script that mounts through the API in its own process (importing the built package). */
async function inChild(l: Layers, persist: boolean): Promise<{ code: number | null; pid: number; stderr: string }> {
  const script = [
    `import { mount } from ${JSON.stringify(path.join(REPO_ROOT, 'dist/src/index.js'))};`,
    `const m = await mount(${JSON.stringify(l.mnt)}, { lowers: [${JSON.stringify(l.lower)}], persist: ${persist} });`,
    'console.log(m.pid);',
    'process.exit(0);', // no unmount
  ].join('\n');
  const r = await run(process.execPath, ['--input-type=module', '-e', script], { timeoutMs: 60_000 });
  return { code: r.code, pid: Number(r.stdout.toString('utf8').trim()), stderr: r.stderr };
}

test('a mount ends with the process that made it, unless it asked to persist', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('lifetime');
  try {
    const a = await inChild(l, false);
    t.is(a.code, 0, a.stderr);
    t.true(await until(() => mountedFsType(l.mnt) === undefined && !alive(a.pid)), 'unmounted and the server gone');

    const b = await inChild(l, true);
    t.is(b.code, 0, b.stderr);
    await new Promise((r) => setTimeout(r, 300));
    t.is(mountedFsType(l.mnt), 'fuse.layerfs', 'still mounted after its maker exited');
    t.is(fs.readFileSync(path.join(l.mnt, 'etc/hostname'), 'utf8'), 'base\n');
    const u = await layerfsCli(['umount', l.mnt]);
    t.is(u.code, 0, u.stderr);
    t.false(alive(b.pid));
  } finally {
    await cleanup(l.mnt);
  }
});

test('the package loads by its name from ESM and from CommonJS', async (t) => {
  const dir = await space.dir('consumer');
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(REPO_ROOT, path.join(dir, 'node_modules', 'layerfs'));
  const names = ['mount', 'LayerfsError', 'createUnion', 'applyLayer', 'commitLayerToFile', 'upperChanges'];
  const probe = `console.log(JSON.stringify(${JSON.stringify(names)}.map((n) => typeof m[n])))`;
  fs.writeFileSync(path.join(dir, 'esm.mjs'), `import * as m from 'layerfs';\n${probe};\n`);
  fs.writeFileSync(path.join(dir, 'cjs.cjs'), `const m = require('layerfs');\n${probe};\n`);
  for (const file of ['esm.mjs', 'cjs.cjs']) {
    const r = spawnSync(process.execPath, [file], { cwd: dir, encoding: 'utf8' });
    t.is(r.status, 0, `${file}: ${r.stderr}`);
    t.deepEqual(JSON.parse(r.stdout), names.map(() => 'function'), file);
  }
});
