// With allow_other, another user gets exactly the access the kernel's overlayfs gives them: the
// same layers are mounted by both, and an unprivileged process (nobody) tries the same stat,
// read, list, access and write calls on both; every outcome must be the same.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { buildLayers, type Entry, type LayerSpec } from '../helpers/layers.js';
import { layerfsCli, withKernelOverlay, withLayerfs } from '../helpers/mounts.js';

const space = scratch(test);

const NOBODY = 65534;
const f = (path: string, mode: number, uid = 0, gid = 0): Entry => ({ type: 'file', path, mode, uid, gid, content: `${path}\n` });
const d = (path: string, mode: number, uid = 0, gid = 0): Entry => ({ type: 'dir', path, mode, uid, gid });

const LAYERS: LayerSpec[] = [
  {
    entries: [
      d('private', 0o700, 1000, 1000), f('private/top', 0o644),
      d('xonly', 0o711), f('xonly/known', 0o644), f('xonly/secret', 0o600),
      f('mine', 0o600, NOBODY, NOBODY), f('group-read', 0o640, 0, NOBODY), f('none', 0o000),
      f('world', 0o644), f('exec', 0o755), f('noexec', 0o644),
      // Merged: the top's 0700 wins over the lower's 0755.
      d('merged', 0o700), f('merged/top', 0o644),
      d('open', 0o755), f('open/top', 0o600, 1000, 1000),
    ],
  },
  {
    entries: [
      d('private', 0o755), f('private/low', 0o644),
      d('merged', 0o755), f('merged/low', 0o644),
      d('open', 0o777), f('open/low', 0o666), f('open/low-private', 0o600),
      d('lowonly', 0o750, 0, NOBODY), f('lowonly/f', 0o640, 0, NOBODY),
      d('lowonly-closed', 0o700), f('lowonly-closed/f', 0o644),
    ],
  },
];

const PATHS = [
  '', 'private', 'private/top', 'private/low', 'xonly', 'xonly/known', 'xonly/secret', 'mine',
  'group-read', 'none', 'world', 'exec', 'noexec', 'merged', 'merged/top', 'merged/low', 'open',
  'open/top', 'open/low', 'open/low-private', 'lowonly', 'lowonly/f', 'lowonly-closed', 'lowonly-closed/f',
];

// Runs as nobody: one line of JSON, path -> outcome of each call ("ok" or the error code).
const PROBE = `
const fs = require('fs'), path = require('path');
const [root, paths] = [process.argv[1], JSON.parse(process.argv[2])];
const o = (fn) => { try { fn(); return 'ok'; } catch (e) { return e.code; } };
const out = {};
for (const p of paths) {
  const a = path.join(root, p);
  out[p] = {
    stat: o(() => fs.lstatSync(a)),
    read: o(() => fs.readFileSync(a)),
    list: o(() => fs.readdirSync(a)),
    R: o(() => fs.accessSync(a, fs.constants.R_OK)),
    W: o(() => fs.accessSync(a, fs.constants.W_OK)),
    X: o(() => fs.accessSync(a, fs.constants.X_OK)),
    write: o(() => fs.closeSync(fs.openSync(a, 'r+'))),
    create: o(() => fs.closeSync(fs.openSync(path.join(a, 'new'), 'wx'))),
  };
}
process.stdout.write(JSON.stringify(out));
`;

function probeAsNobody(root: string, paths: readonly string[] = PATHS): Promise<Record<string, Record<string, string>>> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['-e', PROBE, root, JSON.stringify(paths)], {
      uid: NOBODY, gid: NOBODY, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    c.stdout.on('data', (b: Buffer) => (out += b.toString()));
    c.stderr.on('data', (b: Buffer) => (err += b.toString()));
    c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Record<string, Record<string, string>>) : reject(new Error(`probe exited ${code}: ${err}`))));
  });
}

test('other users get exactly the access the kernel overlayfs gives them (allow_other)', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('perm');
  const built = await buildLayers(root, LAYERS, { format: 'kernel' });
  const kernel = await withKernelOverlay({ lowers: built.dirs }, (mnt) => probeAsNobody(mnt));
  const ours = await withLayerfs({ lowers: built.dirs, options: ['allow_other'] }, (mnt) => probeAsNobody(mnt));
  // The probe itself must see differences between paths, or it proves nothing.
  t.not(kernel['private/top']?.read, 'ok');
  t.is(kernel['world']?.read, 'ok');
  t.deepEqual(ours, kernel);
});

// D69: a root mount lets other users in by default, as the kernel's overlayfs (and fuse-overlayfs
// as root) do: a container's processes run as many users (man-db's trigger runs mandb as `man`;
// it failed with EACCES in an apt-get inside a chroot on layerfs). allow_other=off keeps them out.
test('as root, other users get in without allow_other, as on the kernel overlayfs; allow_other=off keeps them out', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('perm-default');
  const built = await buildLayers(root, LAYERS, { format: 'kernel' });
  const paths = ['', 'world', 'exec', 'private/top', 'merged/low'];
  const kernel = await withKernelOverlay({ lowers: built.dirs }, (mnt) => probeAsNobody(mnt, paths));
  const ours = await withLayerfs({ lowers: built.dirs }, (mnt) => probeAsNobody(mnt, paths));
  t.is(ours['world']?.read, 'ok');
  t.deepEqual(ours, kernel);
  const closed = await withLayerfs({ lowers: built.dirs, options: ['allow_other=off'] }, (mnt) => probeAsNobody(mnt, paths));
  for (const p of paths) t.is(closed[p]?.stat, 'EACCES', `${p}: only the user who mounted it gets in`);
});

// POSIX ACLs in the layers of a read-only union: the kernel enforces them on layerfs's mount as
// on its own overlayfs (D28: a read-only union lets the kernel enforce and keep ACLs). A writable
// union: below (D31).
test('read-only union: POSIX ACLs in the layers grant and deny other users as on the kernel overlayfs', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('acl');
  const built = await buildLayers(root, [{
    entries: [
      f('acl-grant', 0o600), f('acl-deny', 0o644), d('acl-dir', 0o700), f('acl-dir/inner', 0o644),
      f('acl-group', 0o640), f('plain', 0o644),
    ],
  }], { format: 'kernel' });
  const layer = built.dirs[0] as string;
  const setfacl = (args: string[]): void => {
    const r = spawnSync('setfacl', args, { cwd: layer, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`setfacl ${args.join(' ')}: ${r.stderr}`);
  };
  setfacl(['-m', `u:${NOBODY}:r`, 'acl-grant']);
  setfacl(['-m', `u:${NOBODY}:-`, 'acl-deny']);
  setfacl(['-m', `u:${NOBODY}:rx`, 'acl-dir']);
  setfacl(['-m', `g:${NOBODY}:-`, 'acl-group']);
  const paths = ['acl-grant', 'acl-deny', 'acl-dir', 'acl-dir/inner', 'acl-group', 'plain'];
  const kernel = await withKernelOverlay({ lowers: built.dirs }, (mnt) => probeAsNobody(mnt, paths));
  const ours = await withLayerfs({ lowers: built.dirs, options: ['allow_other'] }, (mnt) => probeAsNobody(mnt, paths));
  // The oracle must show the ACLs at work, or the comparison proves little.
  t.is(kernel['acl-grant']?.read, 'ok');
  t.is(kernel['acl-deny']?.read, 'EACCES');
  t.is(kernel['acl-dir/inner']?.read, 'ok');
  t.deepEqual(ours, kernel);
});

// D71: with noacl the kernel checks access against the mode bits only, as where layerfs cannot
// let it enforce ACLs (lower_ttl, engine=libfuse); the ACLs are still there to read. What it
// saves: a GETXATTR of the root's ACL each time another user walks a path through the root.
test('noacl: other users get what the mode bits give, the ACLs still show, and no ACL is asked for', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('noacl');
  const built = await buildLayers(root, [{ entries: [f('acl-grant', 0o600), f('acl-deny', 0o644), f('plain', 0o644)] }], { format: 'kernel' });
  const layer = built.dirs[0] as string;
  for (const args of [['-m', `u:${NOBODY}:r`, 'acl-grant'], ['-m', `u:${NOBODY}:-`, 'acl-deny']]) {
    const r = spawnSync('setfacl', args, { cwd: layer, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`setfacl ${args.join(' ')}: ${r.stderr}`);
  }
  const paths = ['acl-grant', 'acl-deny', 'plain'];
  const run = (options: string[]) => withLayerfs({ lowers: built.dirs, options }, async (mnt) => {
    const probe = await probeAsNobody(mnt, paths);
    const getfacl = spawnSync('getfacl', ['-cn', `${mnt}/acl-grant`], { encoding: 'utf8' }).stdout;
    const stats = JSON.parse((await layerfsCli(['stats', '--json', mnt])).stdout) as { ops: Record<string, { count: number }> };
    return { probe, getfacl, getxattrs: stats.ops['getxattr']?.count ?? 0 };
  });
  const enforced = await run([]);
  const modeOnly = await run(['noacl']);
  t.is(enforced.probe['acl-grant']?.read, 'ok', 'by default the ACL grants');
  t.is(enforced.probe['acl-deny']?.read, 'EACCES', 'and denies');
  t.true(enforced.getxattrs > 0, 'the kernel asked for ACLs');
  t.is(modeOnly.probe['acl-grant']?.read, 'EACCES', 'noacl: the mode bits (600) decide');
  t.is(modeOnly.probe['acl-deny']?.read, 'ok', 'noacl: the mode bits (644) decide');
  t.regex(modeOnly.getfacl, new RegExp(`user:${NOBODY}:r--`), 'the ACL still shows');
  t.is(modeOnly.getxattrs, 1, 'only getfacl\'s own request reached layerfs');
});

// Set-ids dropped by writes of other users: the VFS drops set-user-ID, and set-group-ID where
// group execution is allowed, when a caller without CAP_FSETID writes, truncates or opens with
// O_TRUNC; root keeps them. layerfs does it itself (D29: FUSE_HANDLE_KILLPRIV_V2), since it
// writes to the upper as root.
const WRITER = `
const fs = require('fs'), path = require('path');
const [root, op, p] = process.argv.slice(1);
const a = path.join(root, p);
if (op === 'append') fs.appendFileSync(a, 'x');
if (op === 'truncate') fs.truncateSync(a, 1);
if (op === 'otrunc') fs.writeFileSync(a, 'y');
`;

test('writes, truncates and O_TRUNC opens by another user drop set-ids as on the kernel overlayfs', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('setid');
  // path, mode, what is done, by whom, the file's group
  const files: Array<[string, number, 'append' | 'truncate' | 'otrunc', number, number?]> = [
    ['append-both', 0o6777, 'append', NOBODY],
    ['append-sgid-no-gx', 0o2767, 'append', NOBODY],
    ['append-sgid-no-gx-own-group', 0o2767, 'append', NOBODY, NOBODY],
    ['truncate-suid', 0o4777, 'truncate', NOBODY],
    ['otrunc-suid', 0o4777, 'otrunc', NOBODY],
    ['root-append', 0o6777, 'append', 0],
  ];
  const layers = (): LayerSpec[] => [{ entries: files.map(([p, mode, , , gid]) => f(p, mode, 0, gid ?? 0)) }];
  const run = async (mnt: string): Promise<Record<string, string>> => {
    for (const [p, , op, uid] of files) {
      const r = spawnSync(process.execPath, ['-e', WRITER, mnt, op, p], { uid, gid: uid, cwd: '/', encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${op} ${p} as ${uid}: ${r.stderr}`);
    }
    return Object.fromEntries(files.map(([p]) => [p, (fs.statSync(`${mnt}/${p}`).mode & 0o7777).toString(8)]));
  };
  for (const d of ['ku', 'kw', 'lu', 'lw']) fs.mkdirSync(`${root}/${d}`);
  const k = await buildLayers(await space.dir('setid-k'), layers(), { format: 'kernel' });
  const kernel = await withKernelOverlay({ lowers: k.dirs, upper: `${root}/ku`, work: `${root}/kw` }, run);
  const l = await buildLayers(await space.dir('setid-l'), layers(), { format: 'kernel' });
  const ours = await withLayerfs({ lowers: l.dirs, upper: `${root}/lu`, work: `${root}/lw`, options: ['allow_other'] }, run);
  // The oracle shows the drops, and what keeps a set-id: being root, or (set-group-ID without
  // group execution) being in the file's group.
  t.is(kernel['append-both'], '777');
  t.is(kernel['append-sgid-no-gx'], '767');
  t.is(kernel['append-sgid-no-gx-own-group'], '2767');
  t.is(kernel['root-append'], '6777');
  t.deepEqual(ours, kernel);
});

// New entries in a set-group-ID directory take its group, and a new directory its set-group-ID
// bit (inode_init_owner). layerfs builds every new entry in the work dir, where nothing is
// inherited, so it must give them itself.
const MAKER = `
const fs = require('fs'), path = require('path');
const [dir, tag] = process.argv.slice(1);
const a = (n) => path.join(dir, tag + '-' + n);
fs.closeSync(fs.openSync(a('file'), 'wx', 0o644));
fs.closeSync(fs.openSync(a('file-sgid'), 'wx', 0o2775));
fs.mkdirSync(a('dir'), 0o755);
fs.closeSync(fs.openSync(path.join(a('dir'), 'inner'), 'wx', 0o644));
fs.symlinkSync('target', a('link'));
require('child_process').execFileSync('mkfifo', [a('fifo')]);
`;

test('entries made in a set-group-ID directory take its group and bit as on the kernel overlayfs', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('sgid-dir');
  const GROUP = 100;
  const layers = (): LayerSpec[] => [{ entries: [d('shared', 0o2777, 0, GROUP), d('plain', 0o777)] }];
  const names = ['file', 'file-sgid', 'dir', 'dir/inner', 'link', 'fifo'];
  const run = async (mnt: string): Promise<Record<string, string>> => {
    const out: Record<string, string> = {};
    for (const dir of ['shared', 'plain']) {
      for (const [tag, uid] of [['root', 0], ['nobody', NOBODY]] as const) {
        const r = spawnSync(process.execPath, ['-e', MAKER, `${mnt}/${dir}`, tag], { uid, gid: uid, cwd: '/', encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`make in ${dir} as ${tag}: ${r.stderr}`);
        for (const n of names) {
          const st = fs.lstatSync(`${mnt}/${dir}/${tag}-${n}`);
          out[`${dir}/${tag}-${n}`] = `${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8)}`;
        }
      }
    }
    return out;
  };
  for (const x of ['ku', 'kw', 'lu', 'lw']) fs.mkdirSync(`${root}/${x}`);
  const k = await buildLayers(await space.dir('sgid-k'), layers(), { format: 'kernel' });
  const kernel = await withKernelOverlay({ lowers: k.dirs, upper: `${root}/ku`, work: `${root}/kw` }, run);
  const l = await buildLayers(await space.dir('sgid-l'), layers(), { format: 'kernel' });
  const ours = await withLayerfs({ lowers: l.dirs, upper: `${root}/lu`, work: `${root}/lw`, options: ['allow_other'] }, run);
  // The oracle shows the inheritance, and its absence in a plain directory.
  t.is(kernel['shared/nobody-file'], `${NOBODY}:${GROUP} 644`);
  t.is(kernel['shared/root-dir'], `0:${GROUP} 2755`);
  t.is(kernel['shared/root-dir/inner'], `0:${GROUP} 644`);
  t.is(kernel['plain/nobody-dir'], `${NOBODY}:${NOBODY} 755`);
  t.deepEqual(ours, kernel);
});

// POSIX ACLs in a writable union: enforced as in a read-only one, kept in step with chmod and
// setfacl through the mount (on lower files too, which are copied up first), and inherited by new
// entries from their directory's default ACL, where the umask then does not apply; elsewhere the
// umask does. The kernel's overlayfs computes what a new entry inherits from the merged parent.
const ACL_MAKER = `
const fs = require('fs'), path = require('path'), cp = require('child_process');
const [dir, tag] = process.argv.slice(1);
process.umask(0o022);
const a = (n) => path.join(dir, tag + '-' + n);
fs.closeSync(fs.openSync(a('file'), 'wx', 0o666));
fs.closeSync(fs.openSync(a('file-x'), 'wx', 0o775));
fs.mkdirSync(a('dir'), 0o777);
fs.closeSync(fs.openSync(path.join(a('dir'), 'inner'), 'wx', 0o640));
cp.execFileSync('mkfifo', [a('fifo')]);
fs.symlinkSync('target', a('link'));
`;

test('writable union: POSIX ACLs are enforced, kept in step and inherited as on the kernel overlayfs', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('acl-rw');
  const layers = (): LayerSpec[] => [{
    entries: [
      f('acl-grant', 0o600), f('acl-deny', 0o644), d('acl-dir', 0o700), f('acl-dir/inner', 0o644),
      f('world', 0o644), f('masked', 0o644), d('inherit', 0o777), d('plain', 0o777),
    ],
  }];
  const setfacl = (cwd: string, args: string[]): void => {
    const r = spawnSync('setfacl', args, { cwd, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`setfacl ${args.join(' ')}: ${r.stderr}`);
  };
  const prepare = (layer: string): void => {
    setfacl(layer, ['-m', `u:${NOBODY}:r`, 'acl-grant']);
    setfacl(layer, ['-m', `u:${NOBODY}:-`, 'acl-deny']);
    setfacl(layer, ['-m', `u:${NOBODY}:rx`, 'acl-dir']);
    setfacl(layer, ['-d', '-m', `u:${NOBODY}:rwx,g::r-x,o::-`, 'inherit']);
  };
  const names = ['file', 'file-x', 'dir', 'dir/inner', 'fifo', 'link'];
  const run = async (mnt: string): Promise<Record<string, unknown>> => {
    // Through the mount, on lower files (copied up first) and on a new directory.
    setfacl(mnt, ['-m', `u:${NOBODY}:-`, 'world']);
    setfacl(mnt, ['-m', `u:${NOBODY}:rw`, 'masked']);
    fs.chmodSync(`${mnt}/masked`, 0o600); // the mask follows the group bits: nobody loses rw
    // Two names of one file: what nobody was allowed through one name, and the kernel kept,
    // must not outlive a change made through the other.
    fs.writeFileSync(`${mnt}/twin`, 'twin\n', { mode: 0o644 });
    fs.linkSync(`${mnt}/twin`, `${mnt}/twin2`);
    t.is(spawnSync('cat', [`${mnt}/twin2`], { uid: NOBODY, gid: NOBODY }).status, 0);
    setfacl(mnt, ['-m', `u:${NOBODY}:-`, 'twin']);
    fs.mkdirSync(`${mnt}/made`);
    fs.chmodSync(`${mnt}/made`, 0o777);
    setfacl(mnt, ['-d', '-m', `u:${NOBODY}:rw`, 'made']);
    const out: Record<string, unknown> = {};
    const shown = (p: string): string => {
      const st = fs.lstatSync(`${mnt}/${p}`);
      const acl = st.isSymbolicLink() ? '' : spawnSync('getfacl', ['-cnp', p], { cwd: mnt, encoding: 'utf8' }).stdout;
      return `${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8)}\n${acl}`;
    };
    for (const p of ['world', 'masked', 'made']) out[p] = shown(p);
    for (const dir of ['inherit', 'plain', 'made']) {
      for (const [tag, uid] of [['root', 0], ['nobody', NOBODY]] as const) {
        const r = spawnSync(process.execPath, ['-e', ACL_MAKER, `${mnt}/${dir}`, tag], { uid, gid: uid, cwd: '/', encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`make in ${dir} as ${tag}: ${r.stderr}`);
        for (const n of names) out[`${dir}/${tag}-${n}`] = shown(`${dir}/${tag}-${n}`);
      }
    }
    out['nobody'] = await probeAsNobody(mnt, ['acl-grant', 'acl-deny', 'acl-dir', 'acl-dir/inner', 'world', 'masked', 'twin2', 'inherit/root-file', 'inherit/root-dir', 'made/root-file']);
    return out;
  };
  // The ACLs as stored in an upper, every entry, by relative path.
  const stored = (upper: string): string => {
    const paths = (fs.readdirSync(upper, { recursive: true }) as string[]).filter((p) => !fs.lstatSync(`${upper}/${p}`).isSymbolicLink()).sort();
    return spawnSync('getfacl', ['-np', ...paths], { cwd: upper, encoding: 'utf8' }).stdout;
  };
  for (const x of ['ku', 'kw', 'lu', 'lw']) fs.mkdirSync(`${root}/${x}`);
  const k = await buildLayers(await space.dir('acl-rw-k'), layers(), { format: 'kernel' });
  prepare(k.dirs[0] as string);
  const kernel = await withKernelOverlay({ lowers: k.dirs, upper: `${root}/ku`, work: `${root}/kw` }, run);
  const l = await buildLayers(await space.dir('acl-rw-l'), layers(), { format: 'kernel' });
  prepare(l.dirs[0] as string);
  const ours = await withLayerfs({ lowers: l.dirs, upper: `${root}/lu`, work: `${root}/lw`, options: ['allow_other'] }, run);
  // The oracle shows enforcement, the mask at work, inheritance with the umask ignored, and the
  // umask where nothing is inherited.
  const probe = kernel['nobody'] as Record<string, Record<string, string>>;
  t.is(probe['acl-grant']?.read, 'ok');
  t.is(probe['acl-deny']?.read, 'EACCES');
  t.is(probe['world']?.read, 'EACCES');
  t.is(probe['masked']?.write, 'EACCES');
  t.is(probe['inherit/root-file']?.write, 'ok');
  t.regex(kernel['inherit/root-file'] as string, /^0:0 660\n.*user:65534:rwx\t#effective:rw-/s);
  t.regex(kernel['inherit/root-dir'] as string, /^0:0 770\n.*default:user:65534:rwx/s);
  t.regex(kernel['plain/root-file'] as string, /^0:0 644\n/);
  t.is(probe['twin2']?.read, 'EACCES');
  t.deepEqual(ours, kernel);
  const upper = stored(`${root}/ku`);
  t.regex(upper, /# file: inherit\/nobody-dir\/inner\n# owner: 65534\n# group: 65534\nuser::rw-\nuser:65534:rwx/);
  t.is(stored(`${root}/lu`), upper);
});
