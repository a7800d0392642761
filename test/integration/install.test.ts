// Installing the package as a user does: `npm pack` of the checkout, `npm install -g` of that
// tarball (its postinstall patches fuse-native and builds the addon where npm put it), `layerfs`
// from the system PATH, an /etc/fstab-style line mounted by `mount -a -T` (mount(8) -> mount.fuse
// -> `layerfs layerfs MNT -o ...`, as at boot), and `npm uninstall -g` leaving the global prefix
// exactly as it was.
//
// This changes the machine's global npm prefix while it runs (npm prefix -g: /usr on Debian's
// nodejs), so it refuses to run over an existing global layerfs, and it always uninstalls what it
// installed. It needs the npm registry (the package's dependencies are fetched as a user's
// install would fetch them).
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readRecord, socketFor } from '../../src/host/runtime.js';
import { isCI, requireMountCapable, scratch } from '../helpers/env.js';
import { REPO_ROOT, mountedFsType } from '../helpers/mounts.js';
import { alive, until } from '../helpers/wait.js';

const space = scratch(test);

/** The PATH that boot-time mounts see (mount(8) runs mount.fuse with the system's PATH). */
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The environment of a user at a shell: this process's, minus what npm sets for the script that
 * started the tests (npm_package_*, npm_lifecycle_*, npm_config_local_prefix, ...), which would
 * otherwise tie the npm commands below to the checkout. Registry, cache and proxy settings stay.
 */
function userEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) && !/^npm_config_/i.test(k)) continue;
    if (/^npm_config_(local_prefix|call|global)$/i.test(k)) continue;
    if (k === 'INIT_CWD') continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

interface Ran { code: number | null; stdout: string; stderr: string; ms: number }

/** Run a command in cwd and collect its output; SIGKILLed after timeoutMs. */
function sh(cmd: string, args: string[], opts: { cwd: string; timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<Ran> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? userEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      err += `\n[killed after ${opts.timeoutMs} ms]`;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: out, stderr: err, ms: Date.now() - start });
    });
  });
}

/** The last lines of a command's output, for an assertion message. */
function tail(r: Ran, lines = 40): string {
  return `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-lines).join('\n');
}

/**
 * Every entry under dir, recursively, without following symlinks: "a/b/" for a directory,
 * "a/b -> target" for a symlink, "a/b" otherwise. Sorted; empty when dir does not exist.
 */
function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(path.join(dir, rel), { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    for (const e of ents) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isSymbolicLink()) out.push(`${r} -> ${fs.readlinkSync(path.join(dir, r))}`);
      else if (e.isDirectory()) {
        out.push(`${r}/`);
        walk(r);
      } else out.push(r);
    }
  };
  walk('');
  return out.sort();
}

/**
 * A listing of the global node_modules without the Python bytecode that npm's own node-gyp
 * leaves in its gyp the first time it runs (npm/node_modules/node-gyp/gyp/pylib/gyp/__pycache__):
 * the install compiles the addon with that node-gyp, and the cache is npm's, not the package's.
 */
function withoutNpmBytecode(listing: string[]): string[] {
  return listing.filter((x) => !/^npm\/(.*\/)?__pycache__(\/|$)/.test(x));
}

/** What differs between two listings, "+ added" / "- removed", at most limit lines. */
function listingDiff(before: string[], after: string[], limit = 30): string[] {
  const b = new Set(before);
  const a = new Set(after);
  const d = [...after.filter((x) => !b.has(x)).map((x) => `+ ${x}`), ...before.filter((x) => !a.has(x)).map((x) => `- ${x}`)];
  return d.length > limit ? [...d.slice(0, limit), `... ${d.length - limit} more`] : d;
}

/** A requirement of the test is missing: fail under CI, log and pass elsewhere (as requireMountCapable). */
function cannotRun(t: ExecutionContext, why: string): void {
  if (isCI()) t.fail(`CI=true but the install test cannot run: ${why}`);
  else {
    t.log(`SKIPPED (not CI): ${why}`);
    t.pass();
  }
}

test('npm install -g of the packed tarball; an fstab line mounts through mount -a; uninstall leaves nothing', async (t) => {
  if (!requireMountCapable(t)) return;
  // Typically 15-90 s (the dependencies come from the registry, the addon is compiled); every
  // step below has its own, shorter deadline, so that the finally block always gets to run.
  t.timeout(15 * 60_000, 'npm pack + install -g + mount + uninstall');

  const root = await space.dir('install');
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
    name: string; version: string; scripts: Record<string, string>;
  };

  // Where npm puts global packages and their commands.
  const p = await sh('npm', ['prefix', '-g'], { cwd: root, timeoutMs: 60_000 });
  t.is(p.code, 0, tail(p));
  const prefix = p.stdout.trim();
  const libDir = path.join(prefix, 'lib', 'node_modules');
  const binDir = path.join(prefix, 'bin');
  const installed = path.join(libDir, pkg.name);
  const binLink = path.join(binDir, 'layerfs');

  // Never run over a layerfs that someone installed: the uninstall at the end would remove it.
  const existing = [installed, binLink, ...SYSTEM_PATH.split(':').map((d) => path.join(d, 'layerfs'))]
    .filter((f, i, all) => all.indexOf(f) === i)
    .filter((f) => { try { fs.lstatSync(f); return true; } catch { return false; } });
  if (existing.length > 0) {
    cannotRun(t, `layerfs is already installed on this machine (${existing.join(', ')}); this test installs and uninstalls it globally, remove it first (npm uninstall -g layerfs) or run this test elsewhere`);
    return;
  }
  const ping = await sh('npm', ['ping'], { cwd: root, timeoutMs: 60_000 });
  if (ping.code !== 0) {
    cannotRun(t, `the npm registry is not reachable (npm ping: ${tail(ping, 5)})`);
    return;
  }

  const before = { lib: listTree(libDir), bin: listTree(binDir) };
  const layers = path.join(root, 'layers');
  const top = path.join(layers, 'top');
  const base = path.join(layers, 'base');
  const upper = path.join(layers, 'upper');
  const work = path.join(layers, 'work');
  const mnt = path.join(root, 'mnt');
  for (const d of [top, base, upper, work, mnt, path.join(base, 'etc')]) fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(top, 'hello'), 'top\n');
  fs.writeFileSync(path.join(base, 'etc', 'hostname'), 'base\n');
  let serverPid: number | undefined;
  let uninstall: Ran | undefined;

  try {
    // 1. The tarball. --ignore-scripts: "prepare" (tsc) would rewrite dist/ under this running
    //    suite; the suite runs from a dist/ that `npm run build` has just made.
    const tarDir = path.join(root, 'pack');
    fs.mkdirSync(tarDir);
    const pack = await sh('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tarDir], { cwd: REPO_ROOT, timeoutMs: 120_000 });
    t.is(pack.code, 0, tail(pack));
    const packed = (JSON.parse(pack.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>)[0]!;
    const files = packed.files.map((f) => f.path);
    t.log(`npm pack: ${files.length} files, ${pack.ms} ms`);
    // What the installed package needs: the CLI, the build, the patch and the scripts that
    // postinstall runs; and no tests, benchmarks, TypeScript sources or node_modules.
    const needed = [
      'package.json', 'bin/layerfs.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli.js',
      ...fs.readdirSync(path.join(REPO_ROOT, 'patches')).map((f) => `patches/${f}`),
      ...[...(pkg.scripts['postinstall'] ?? '').matchAll(/scripts\/[\w.-]+/g)].map((m) => m[0]),
    ];
    t.deepEqual(needed.filter((f) => !files.includes(f)), [], 'the tarball has everything the install and the CLI need');
    t.deepEqual(files.filter((f) => /^(test|bench|src|node_modules|dist\/(test|bench|scripts))\//.test(f)), [], 'and nothing of the development checkout');
    const tarball = path.join(tarDir, packed.filename);

    // 2. Install, as a user would (scripts shown in the output, for the failure message).
    const inst = await sh('npm', ['install', '-g', '--foreground-scripts', tarball], { cwd: root, timeoutMs: 8 * 60_000 });
    t.log(`npm install -g: ${inst.ms} ms`);
    t.is(inst.code, 0, `npm install -g failed:\n${tail(inst)}`);
    t.regex(inst.stdout + inst.stderr, /build-native: ok, fuse-native patch ABI \d+/, 'postinstall patched and built fuse-native');
    t.is(fs.realpathSync(binLink), path.join(fs.realpathSync(installed), 'bin', 'layerfs.js'), `${binLink} is the installed CLI`);
    const v = await sh('layerfs', ['--version'], { cwd: root, timeoutMs: 60_000, env: userEnv({ PATH: SYSTEM_PATH }) });
    t.is(v.code, 0, tail(v));
    t.is(v.stdout.trim(), `layerfs ${pkg.version}`, 'layerfs --version from the system PATH');

    // 3. An fstab line, mounted as at boot, with the options a boot line has (mount(8) and
    //    mount.fuse keep nofail and x-* to themselves; layerfs would refuse them as unknown).
    //    The paths have no space, comma, colon or backslash, so the line needs no escapes.
    const fstab = path.join(root, 'fstab');
    fs.writeFileSync(fstab, [
      '# test fstab (install.test.ts)',
      `layerfs  ${mnt}  fuse.layerfs  lowerdir=${top}:${base},upperdir=${upper},workdir=${work},nofail,x-systemd.requires-mounts-for=${layers}  0  0`,
      '',
    ].join('\n'));
    const m = await sh('mount', ['-a', '-T', fstab], { cwd: '/', timeoutMs: 60_000, env: userEnv({ PATH: SYSTEM_PATH }) });
    t.log(`mount -a -T: ${m.ms} ms`);
    t.is(m.code, 0, `mount -a -T failed:\n${tail(m)}`);
    t.is(mountedFsType(mnt), 'fuse.layerfs');
    serverPid = readRecord(mnt)?.pid;
    t.truthy(serverPid !== undefined && alive(serverPid), 'the server is recorded and running');
    // The server is the installed package, on the addon its postinstall built (the default
    // engine's); the patched fuse-native that engine=libfuse loads was built there too.
    const maps = serverPid !== undefined ? fs.readFileSync(`/proc/${serverPid}/maps`, 'utf8') : '';
    const installedAt = fs.realpathSync(installed);
    t.true(maps.includes(path.join(installedAt, 'native', 'fuse-dev', 'build', 'Release', 'fuse_dev.node')),
      'the server loaded the installed package\'s build of its /dev/fuse reader');
    t.true(fs.existsSync(path.join(installedAt, 'node_modules', 'fuse-native', 'build', 'Release', 'fuse.node')),
      'the installed package holds its patched build of fuse-native');

    // The merged tree: a file from each layer; changes land in the upper, the lowers stay as they were.
    t.is(fs.readFileSync(path.join(mnt, 'hello'), 'utf8'), 'top\n');
    t.is(fs.readFileSync(path.join(mnt, 'etc', 'hostname'), 'utf8'), 'base\n');
    fs.writeFileSync(path.join(mnt, 'new'), 'written\n');
    fs.appendFileSync(path.join(mnt, 'etc', 'hostname'), 'changed\n');
    t.is(fs.readFileSync(path.join(upper, 'new'), 'utf8'), 'written\n', 'a new file lands in the upper');
    t.is(fs.readFileSync(path.join(upper, 'etc', 'hostname'), 'utf8'), 'base\nchanged\n', 'a changed lower file is copied up');
    t.is(fs.readFileSync(path.join(base, 'etc', 'hostname'), 'utf8'), 'base\n', 'the lower is untouched');
    t.false(fs.existsSync(path.join(top, 'new')));

    // mount -a again (a second boot script, `mount -a` by hand) leaves the mounted line alone.
    const again = await sh('mount', ['-a', '-T', fstab], { cwd: '/', timeoutMs: 60_000, env: userEnv({ PATH: SYSTEM_PATH }) });
    t.is(again.code, 0, tail(again));
    t.is(readRecord(mnt)?.pid, serverPid, 'still the same server');

    // 4. umount(8), as at shutdown: the server exits and removes its runtime record and socket.
    const u = await sh('umount', [mnt], { cwd: '/', timeoutMs: 60_000 });
    t.is(u.code, 0, tail(u));
    t.is(mountedFsType(mnt), undefined);
    t.true(await until(() => !alive(serverPid!)), 'the server exits after umount');
    t.is(readRecord(mnt), undefined, 'no runtime record left');
    t.false(fs.existsSync(socketFor(mnt)), 'no stats socket left');
  } finally {
    if (mountedFsType(mnt) !== undefined) await sh('umount', ['-l', mnt], { cwd: '/', timeoutMs: 60_000 });
    if (serverPid !== undefined && alive(serverPid)) {
      try { process.kill(serverPid, 'SIGKILL'); } catch { /* gone */ }
    }
    // Always, also after a failed install (npm rolls a failed one back; this is then a no-op).
    uninstall = await sh('npm', ['uninstall', '-g', pkg.name], { cwd: root, timeoutMs: 5 * 60_000 });
    t.log(`npm uninstall -g: ${uninstall.ms} ms`);
  }

  // 5. Nothing left behind: the global prefix is exactly as it was.
  t.is(uninstall.code, 0, `npm uninstall -g failed:\n${tail(uninstall)}`);
  t.false(fs.existsSync(installed), `${installed} is gone`);
  t.throws(() => fs.lstatSync(binLink), { code: 'ENOENT' }, `${binLink} is gone`);
  t.deepEqual(listingDiff(withoutNpmBytecode(before.lib), withoutNpmBytecode(listTree(libDir))), [], `${libDir} is as it was`);
  t.deepEqual(listingDiff(before.bin, listTree(binDir)), [], `${binDir} is as it was`);
});
