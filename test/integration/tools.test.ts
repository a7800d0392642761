// Real tools inside a WRITABLE layerfs mount behave as on the kernel's overlayfs: tar, git, make + cc,
// cp -a, rsync and sqlite3.
//
// Each scenario builds the same lower layers twice (kernel format), each set with its own empty upper
// and work directory, mounts one with the kernel's overlayfs and the other with layerfs, runs the same
// commands on both and then requires:
//   - every command's exit code to be the expected one (0 unless stated), and the tool-level checks of
//     the scenario to hold (tar --compare, git status, make's "up to date", PRAGMA integrity_check...);
//   - equal transcripts (the commands' stdout/stderr, with the mount point replaced by MNT);
//   - equal merged trees (content, modes, owners, xattrs, link targets, mtimes, which names share an
//     inode). Tools set some mtimes to "now", which no two runs share: mtimes later than the start of
//     this file count as "recent" (so "kept an old mtime" vs "set to now" is still a difference).
// Tool-level checks catch what a comparison cannot: both sides being wrong the same way.
//
// Environment:
//   LAYERFS_TOOLS_SUBJECT=kernel   compare the kernel with a second kernel mount instead of layerfs
//                                  (shows that the scenarios are deterministic)

import test from 'ava';
import type { ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { isCI, requireMountCapable, scratch } from '../helpers/env.js';
import { buildLayers, type Entry, type LayerSpec } from '../helpers/layers.js';
import { withKernelOverlay, withLayerfs } from '../helpers/mounts.js';
import { diffNodes, diffSnapshots, inodeGroupDiffs, snapshot, type Snapshot } from '../helpers/tree.js';

const space = scratch(test);
const T_START = Date.now() - 60_000;

type Impl = 'kernel' | 'layerfs';
const SUBJECT: Impl = process.env['LAYERFS_TOOLS_SUBJECT'] === 'kernel' ? 'kernel' : 'layerfs';
const SUBJECT_LABEL = SUBJECT === 'kernel' ? 'kernel#2' : 'layerfs';

// ---------------------------------------------------------------------------------------------
// Tools

/** Command -> Debian package that provides it (named in the failure when it is missing). */
const PACKAGES: Record<string, string> = {
  tar: 'tar', git: 'git', make: 'make', cc: 'gcc', rsync: 'rsync', sqlite3: 'sqlite3', cp: 'coreutils',
  touch: 'coreutils', setfattr: 'attr', getfattr: 'attr',
};

/** True when every tool is there. Missing tools fail the test under CI; elsewhere they skip it. */
function requireTools(t: ExecutionContext, tools: string[], files: Record<string, string> = {}): boolean {
  const missing: string[] = [];
  for (const tool of tools) {
    const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', tool], { stdio: 'ignore' });
    if (r.status !== 0) missing.push(`${tool} (Debian package ${PACKAGES[tool] ?? tool})`);
  }
  // cc alone cannot build anything: the C library headers come from their own package.
  for (const [file, pkg] of Object.entries(files)) if (!fs.existsSync(file)) missing.push(`${file} (Debian package ${pkg})`);
  if (missing.length === 0) return true;
  const msg = `missing tools: ${missing.join(', ')}`;
  if (isCI()) t.fail(`CI=true: ${msg}`);
  else {
    t.log(`SKIPPED (not CI): ${msg}`);
    t.pass();
  }
  return false;
}

let homeDir: Promise<string> | undefined;

/** A clean environment: no user or system configuration may make the two runs differ. */
async function toolEnv(extra: Record<string, string> = {}): Promise<NodeJS.ProcessEnv> {
  homeDir ??= space.dir('home');
  return {
    PATH: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: await homeDir,
    LC_ALL: 'C',
    TZ: 'UTC',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    ...extra,
  };
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function exec(cmd: string, args: string[], opts: { cwd?: string; env: NodeJS.ProcessEnv; input?: string }): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    // A tool stuck on a broken mount must not hang the file (the mount helpers' deadline is longer).
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: null, stdout: '', stderr: `cannot run ${cmd}: ${e.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString('utf8') + (signal !== null ? `[killed by ${signal}]` : '');
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr });
    });
    if (opts.input !== undefined && child.stdin) {
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.input);
    }
  });
}

/** What one side did: the commands and their output, and the checks that did not hold. */
class Transcript {
  readonly entries: string[] = [];
  readonly failures: string[] = [];
  constructor(readonly mnt: string, readonly env: NodeJS.ProcessEnv) {}

  mask(s: string): string {
    return s.split(this.mnt).join('MNT');
  }

  /** Run a command (cwd relative to the mount), record it, and check its exit code. */
  async run(cmd: string, args: string[], opts: { cwd?: string; expect?: number; input?: string; what?: string } = {}): Promise<Ran> {
    const cwd = opts.cwd === undefined ? this.mnt : path.join(this.mnt, opts.cwd);
    const r = await exec(cmd, args, { cwd, env: this.env, ...(opts.input !== undefined ? { input: opts.input } : {}) });
    const desc = this.mask(opts.what ?? `${opts.cwd ?? '.'}$ ${cmd} ${args.join(' ')}`);
    this.entries.push(`${desc}\n  exit ${r.code}\n  stdout: ${JSON.stringify(this.mask(r.stdout))}\n  stderr: ${JSON.stringify(this.mask(r.stderr))}`);
    const want = opts.expect ?? 0;
    if (r.code !== want) this.failures.push(`${desc}: exit ${r.code} (expected ${want}); stderr: ${this.mask(r.stderr).trim().slice(0, 1500)}`);
    return r;
  }

  /** A tool-level expectation (what the scenario promises whatever the other side does). */
  check(what: string, actual: string, expected: string): void {
    this.entries.push(`check ${what}: ${JSON.stringify(this.mask(actual))}`);
    if (actual !== expected) this.failures.push(`${what}: got ${JSON.stringify(this.mask(actual))}, expected ${JSON.stringify(expected)}`);
  }

  fail(what: string, details: string[]): void {
    if (details.length > 0) this.failures.push(`${what}:\n      ${details.join('\n      ')}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Sides and comparison

interface Branches {
  lowers: string[];
  upper: string;
  work: string;
}

async function makeBranches(tag: string, layers: LayerSpec[]): Promise<Branches> {
  const base = await space.dir(tag);
  const [root, upper, work] = ['layers', 'upper', 'work'].map((n) => path.join(base, n)) as [string, string, string];
  for (const d of [root, upper, work]) fs.mkdirSync(d);
  const built = await buildLayers(root, layers, { format: 'kernel' });
  return { lowers: built.dirs, upper, work };
}

function mountWith<T>(impl: Impl, b: Branches, fn: (mnt: string) => Promise<T>): Promise<T> {
  const dirs = { lowers: b.lowers, upper: b.upper, work: b.work, timeoutMs: 600_000 };
  return impl === 'kernel' ? withKernelOverlay(dirs, fn) : withLayerfs(dirs, fn);
}

interface Side {
  label: string;
  branches: Branches;
  tr: Transcript;
  tree: Snapshot;
  /** Names the kernel lists but cannot lstat (whiteouts in single-branch dirs; a known divergence). */
  phantoms: string[];
}

type Body = (tr: Transcript) => Promise<void>;

async function runSide(impl: Impl, label: string, tag: string, layers: LayerSpec[], env: NodeJS.ProcessEnv, body: Body): Promise<Side> {
  const branches = await makeBranches(`${tag}-${label}`, layers);
  return mountWith(impl, branches, async (mnt) => {
    const tr = new Transcript(mnt, env);
    await body(tr);
    const tree = await snapshot(mnt, { xattrs: true, content: true });
    const phantoms = [...tree.nodes].filter(([, n]) => n.type === 'phantom').map(([v]) => v);
    for (const v of phantoms) tree.nodes.delete(v);
    return { label, branches, tr, tree, phantoms };
  });
}

/** The same scenario on the kernel and on the subject. */
async function bothSides(tag: string, layers: LayerSpec[], env: NodeJS.ProcessEnv, body: Body): Promise<[Side, Side]> {
  const k = await runSide('kernel', 'kernel', tag, layers, env, body);
  const s = await runSide(SUBJECT, SUBJECT_LABEL, tag, layers, env, body);
  return [k, s];
}

function normalize(s: Snapshot, ignoreContent: string[]): Snapshot {
  for (const [v, n] of s.nodes) {
    delete n.ino;
    if (n.mtimeMs !== undefined && n.mtimeMs >= T_START) n.mtimeMs = -1;
    if (ignoreContent.includes(v)) delete n.sha256;
  }
  s.problems = s.problems.map((p) => p.split(s.root).join('MNT'));
  return s;
}

interface CompareOptions {
  /** Paths whose content legitimately differs between two runs (e.g. git's index stores inode numbers). */
  ignoreContent?: string[];
}

function differences(k: Side, s: Side, opts: CompareOptions = {}): string[] {
  const out: string[] = [];
  const n = Math.max(k.tr.entries.length, s.tr.entries.length);
  for (let i = 0; i < n; i++) {
    const a = k.tr.entries[i] ?? '(nothing)';
    const b = s.tr.entries[i] ?? '(nothing)';
    if (a !== b) out.push(`transcript entry ${i + 1}:\n    kernel: ${a}\n    ${s.label}: ${b}`);
  }
  for (const d of inodeGroupDiffs(k.tree, s.tree, ['kernel', s.label])) out.push(`hard links: ${d}`);
  const ignore = opts.ignoreContent ?? [];
  const recent = (d: string) => d.replace(/(?<![0-9])-1 \(1969-12-31T23:59:59\.999Z\)/g, 'recent');
  for (const d of diffSnapshots(normalize(k.tree, ignore), normalize(s.tree, ignore), ['kernel', s.label])) out.push(`merged tree: ${recent(d)}`);
  if (s.label === 'layerfs' && s.phantoms.length > 0) out.push(`layerfs lists names it cannot lstat: ${s.phantoms.join(', ')}`);
  return out;
}

function verdict(t: ExecutionContext, k: Side, s: Side, opts: CompareOptions = {}): void {
  const problems: string[] = [];
  for (const side of [k, s]) for (const f of side.tr.failures) problems.push(`${side.label}: ${f}`);
  problems.push(...differences(k, s, opts));
  if (k.phantoms.length > 0) t.log(`kernel lists unstatable whiteouts (known divergence, ignored): ${k.phantoms.join(', ')}`);
  if (problems.length === 0) {
    t.pass();
    return;
  }
  t.fail(`${problems.length} problem(s):\n  ${problems.join('\n  ')}\n  kernel transcript:\n    ${k.tr.entries.join('\n    ')}`);
}

/**
 * Each entry of `source` must be found under `prefix` of `tree` with the same type, mode, owner, size,
 * content, link target, mtime, link count and xattrs: what tar x, cp -a and rsync -aHX promise.
 */
function copyDiffs(source: Snapshot, tree: Snapshot, prefix: string): string[] {
  const out: string[] = [];
  for (const [v, n] of source.nodes) {
    const dv = v === '/' ? prefix : `${prefix}${v}`;
    const m = tree.nodes.get(dv);
    if (m === undefined) out.push(`${dv}: missing`);
    else for (const d of diffNodes(n, m, ['source', 'copy'])) out.push(`${dv}: ${d}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A tree with every kind of entry, for tar, cp -a and rsync

const when = (i: number) => Date.UTC(2018, 2, 3, 4, 5, 6) + i * 61_000 + 123; // old, with milliseconds

function richTree(): LayerSpec {
  const blob = Buffer.alloc(300 * 1024);
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 7 + (i >> 10)) & 0xff;
  const entries: Entry[] = [
    { type: 'dir', path: '', mode: 0o755, mtime: when(0) },
    { type: 'file', path: 'etc/conf', content: 'key=value\n', mode: 0o640, uid: 1000, gid: 1001, mtime: when(1), xattrs: { 'user.note': 'conf', 'user.bin': Buffer.from([0, 1, 2, 255]) } },
    { type: 'dir', path: 'etc', mode: 0o750, uid: 1000, gid: 1000, mtime: when(2), xattrs: { 'user.dir': 'etc' } },
    { type: 'symlink', path: 'etc/conf-link', target: 'conf', mtime: when(3) },
    { type: 'file', path: 'bin/tool', content: '#!/bin/sh\necho tool\n', mode: 0o755, mtime: when(4) },
    { type: 'file', path: 'bin/suid', content: 'suid\n', mode: 0o4755, mtime: when(5) },
    { type: 'dir', path: 'bin', mtime: when(6) },
    { type: 'file', path: 'data/blob', content: blob, mtime: when(7) },
    { type: 'hardlink', path: 'data/blob-link', target: 'data/blob' },
    { type: 'hardlink', path: 'blob-link2', target: 'data/blob' },
    { type: 'file', path: 'data/sparse', size: 2 << 20, writes: [{ offset: 3 << 19, data: 'tail' }], mtime: when(8) },
    { type: 'fifo', path: 'data/pipe', mode: 0o600, mtime: when(9) },
    { type: 'dir', path: 'data', mtime: when(10), xattrs: { 'user.dir': 'data' } },
    { type: 'file', path: 'empty', mtime: when(11) },
    { type: 'symlink', path: 'dangling', target: '/nonexistent/target', mtime: when(12) },
    { type: 'dir', path: 'tmp', mode: 0o1777, mtime: when(13) },
    { type: 'file', path: 'deep/a/b/c/file', content: 'deep\n', mtime: when(14) },
    // Names that the destination's lower layers have too (see destLowers).
    { type: 'file', path: 'replace.txt', content: 'from the source tree\n', mtime: when(15) },
    { type: 'symlink', path: 'link-over-file', target: 'etc/conf', mtime: when(16) },
    { type: 'hardlink', path: 'hl-over-lower', target: 'etc/conf' },
    { type: 'file', path: 'sub/new', content: 'new\n', mtime: when(17) },
    { type: 'dir', path: 'sub', mode: 0o750, mtime: when(18) },
  ];
  return { name: 'source', entries };
}

/** Lower layers holding `dest`, a directory that the source tree is unpacked or copied into. */
function destLowers(dest: string, opts: { fileWhereSourceHasDir: boolean }): LayerSpec[] {
  const top: Entry[] = [
    { type: 'file', path: `${dest}/replace.txt`, content: 'lower top\n' },
    { type: 'file', path: `${dest}/link-over-file`, content: 'a regular file\n' },
    { type: 'file', path: `${dest}/sub/old`, content: 'old\n' },
    { type: 'file', path: `${dest}/keep`, content: 'keep\n' },
  ];
  const bottom: Entry[] = [
    { type: 'file', path: `${dest}/replace.txt`, content: 'lower bottom, longer\n' },
    { type: 'file', path: `${dest}/hl-over-lower`, content: 'lower\n' },
    { type: 'file', path: `${dest}/sub/older`, content: 'older\n' },
    { type: 'file', path: `${dest}/etc/other`, content: 'other\n' },
  ];
  // tar and rsync replace a file by a directory; cp -a refuses to (it is an error there).
  if (opts.fileWhereSourceHasDir) bottom.push({ type: 'file', path: `${dest}/deep`, content: 'a file named deep\n' });
  return [{ entries: top }, { entries: bottom }];
}

async function buildSource(tag: string): Promise<{ dir: string; snap: Snapshot }> {
  const root = await space.dir(tag);
  const built = await buildLayers(root, [richTree()], { format: 'kernel' });
  const dir = built.dirs[0] as string;
  return { dir, snap: await snapshot(dir, { xattrs: true, content: true }) };
}

// ---------------------------------------------------------------------------------------------
// 1. tar x

test('tar x into a directory of the lower layers', async (t) => {
  if (!requireMountCapable(t)) return;
  if (!requireTools(t, ['tar', 'setfattr', 'getfattr'])) return;
  const src = await buildSource('tar-source');
  const archive = path.join(await space.dir('tar-archive'), 'tree.tar');
  const xattrOpts = ['--xattrs', '--xattrs-include=user.*'];
  const mk = await exec('tar', ['--format=posix', ...xattrOpts, '--numeric-owner', '--sort=name', '-cf', archive, '-C', src.dir, '.'], { env: await toolEnv() });
  t.is(mk.code, 0, `creating the archive: ${mk.stderr}`);

  const [k, s] = await bothSides('tar', destLowers('dest', { fileWhereSourceHasDir: true }), await toolEnv(), async (tr) => {
    await tr.run('tar', [...xattrOpts, '--numeric-owner', '-xpvf', archive, '-C', 'dest']);
    // tar's own verdict: content, modes, owners, mtimes, link targets of every member.
    await tr.run('tar', [...xattrOpts, '--numeric-owner', '--compare', '-f', archive, '-C', 'dest']);
    tr.fail('extracted tree vs source tree', copyDiffs(src.snap, await snapshot(tr.mnt, { xattrs: true, content: true }), '/dest'));
  });
  verdict(t, k, s);
});

// ---------------------------------------------------------------------------------------------
// 2. git

function gitLowers(): LayerSpec[] {
  return [
    {
      entries: [
        { type: 'file', path: 'proj/README.md', content: '# Project\n\nTop version.\n' },
        { type: 'file', path: 'proj/src/main.c', content: 'int main(void) { return 0; }\n' },
        { type: 'file', path: 'proj/src/lib/util.c', content: 'int util(void) { return 1; }\n' },
        { type: 'file', path: 'proj/run.sh', content: '#!/bin/sh\nexec ./main\n', mode: 0o755 },
        { type: 'symlink', path: 'proj/main-link', target: 'src/main.c' },
        { type: 'file', path: 'proj/docs/guide.md', content: 'Guide\n' },
      ],
    },
    {
      entries: [
        { type: 'file', path: 'proj/README.md', content: 'hidden by the top layer\n' },
        { type: 'file', path: 'proj/src/old.c', content: '/* old */\n' },
        { type: 'file', path: 'proj/docs/intro.md', content: 'Intro\n' },
        { type: 'file', path: 'proj/LICENSE', content: 'MIT\n' },
      ],
    },
  ];
}

test('git init, add, commit, status over a tree in the lower layers', async (t) => {
  if (!requireMountCapable(t)) return;
  if (!requireTools(t, ['git', 'setfattr', 'getfattr'])) return;
  const env = await toolEnv({ GIT_AUTHOR_DATE: '2020-01-02T03:04:05Z', GIT_COMMITTER_DATE: '2020-01-02T03:04:05Z' });
  const ident = ['-c', 'user.name=Layer Tester', '-c', 'user.email=tester@example.invalid'];
  const [k, s] = await bothSides('git', gitLowers(), env, async (tr) => {
    const git = (args: string[], expect = 0) => tr.run('git', args, { cwd: 'proj', expect });
    await git(['-c', 'init.defaultBranch=main', 'init']);
    await git(['add', '-A']);
    await git([...ident, 'commit', '-m', 'initial']);
    tr.check('status after the first commit', (await git(['status', '--porcelain'])).stdout, '');
    await git(['log', '--format=%H %s']);
    await git(['fsck', '--full', '--strict']);

    // Changes to lower files (copy-up, whiteout, mode change) must show, and only they.
    await fsp.appendFile(path.join(tr.mnt, 'proj/README.md'), 'More.\n');
    await fsp.unlink(path.join(tr.mnt, 'proj/src/old.c'));
    await fsp.chmod(path.join(tr.mnt, 'proj/docs/guide.md'), 0o755);
    await fsp.writeFile(path.join(tr.mnt, 'proj/new.txt'), 'new\n');
    tr.check('status after changes', (await git(['status', '--porcelain'])).stdout, ' M README.md\n M docs/guide.md\n D src/old.c\n?? new.txt\n');
    await git(['diff']);
    await git(['add', '-A']);
    await git([...ident, 'commit', '-m', 'second']);
    tr.check('status after the second commit', (await git(['status', '--porcelain'])).stdout, '');
    await git(['log', '--format=%H %s']);
    await git(['fsck', '--full', '--strict']);
  });
  // The index records inode numbers, devices and ctimes of the work tree.
  verdict(t, k, s, { ignoreContent: ['/proj/.git/index'] });
});

// ---------------------------------------------------------------------------------------------
// 3. make + cc

const MAKEFILE = `prog: main.o util.o
\t$(CC) -o $@ main.o util.o

%.o: %.c util.h
\t$(CC) -c -o $@ $<
`;

function makeLowers(): LayerSpec[] {
  return [
    {
      entries: [
        { type: 'file', path: 'proj/Makefile', content: MAKEFILE },
        { type: 'file', path: 'proj/main.c', content: '#include <stdio.h>\n#include "util.h"\nint main(void) { printf("%d\\n", util(20)); return 0; }\n' },
        { type: 'file', path: 'proj/util.h', content: 'int util(int);\n' },
      ],
    },
    { entries: [{ type: 'file', path: 'proj/util.c', content: '#include "util.h"\nint util(int x) { return x * 2 + 2; }\n' }] },
  ];
}

test('make builds next to sources in the lower layers, and rebuilds only what changed', async (t) => {
  if (!requireMountCapable(t)) return;
  if (!requireTools(t, ['make', 'cc', 'touch', 'getfattr', 'setfattr'], { '/usr/include/stdio.h': 'libc6-dev' })) return;
  const [k, s] = await bothSides('make', makeLowers(), await toolEnv(), async (tr) => {
    const make = async () => (await tr.run('make', [], { cwd: 'proj' })).stdout;
    tr.check('first make', await make(), 'cc -c -o main.o main.c\ncc -c -o util.o util.c\ncc -o prog main.o util.o\n');
    tr.check('./prog', (await tr.run('./prog', [], { cwd: 'proj' })).stdout, '42\n');
    tr.check('make right after', await make(), "make: 'prog' is up to date.\n");
    // util.c is a lower file: touch copies it up and makes it newer than util.o.
    await tr.run('touch', ['util.c'], { cwd: 'proj' });
    tr.check('make after touching util.c', await make(), 'cc -c -o util.o util.c\ncc -o prog main.o util.o\n');
    tr.check('make after the rebuild', await make(), "make: 'prog' is up to date.\n");
    await tr.run('touch', ['util.h'], { cwd: 'proj' });
    tr.check('make after touching util.h', await make(), 'cc -c -o main.o main.c\ncc -c -o util.o util.c\ncc -o prog main.o util.o\n');
    await tr.run('make', ['-q'], { cwd: 'proj' });
  });
  verdict(t, k, s);
});

// ---------------------------------------------------------------------------------------------
// 4. cp -a and rsync -aHX from outside into the mount

test('cp -a and rsync -a -H -X of a tree into directories of the lower layers', async (t) => {
  if (!requireMountCapable(t)) return;
  if (!requireTools(t, ['cp', 'rsync', 'setfattr', 'getfattr'])) return;
  const src = await buildSource('copy-source');
  const layers = destLowers('cpdst', { fileWhereSourceHasDir: false });
  const rs = destLowers('rsdst', { fileWhereSourceHasDir: true });
  layers.forEach((l, i) => l.entries.push(...(rs[i]?.entries ?? [])));
  const rsync = ['-a', '-H', '-X'];
  const [k, s] = await bothSides('copy', layers, await toolEnv(), async (tr) => {
    await tr.run('cp', ['-a', `${src.dir}/.`, 'cpdst/']);
    await tr.run('rsync', [...rsync, `${src.dir}/`, 'rsdst/']);
    // rsync's own verdict on both copies: a dry run must find nothing to do (times, modes, owners,
    // xattrs, hard links).
    for (const dst of ['cpdst', 'rsdst']) {
      tr.check(`rsync -n -i into ${dst} after the copy`, (await tr.run('rsync', [...rsync, '-n', '-i', `${src.dir}/`, `${dst}/`])).stdout, '');
    }
    const tree = await snapshot(tr.mnt, { xattrs: true, content: true });
    tr.fail('cp -a copy vs source tree', copyDiffs(src.snap, tree, '/cpdst'));
    tr.fail('rsync copy vs source tree', copyDiffs(src.snap, tree, '/rsdst'));
  });
  verdict(t, k, s);
});

// ---------------------------------------------------------------------------------------------
// 5. sqlite3

const SQL_CREATE = `
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, v REAL);
CREATE INDEX t_name ON t(name);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000)
  INSERT INTO t(name, v) SELECT printf('row-%05d', x), x * 1.5 FROM c;
`;
const SQL_SUMMARY = 'SELECT count(*), sum(v), max(id) FROM t;';
const rows = (n: number, tag: string) =>
  `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${n}) INSERT INTO t(name, v) SELECT printf('${tag}-%05d', x), x / 3.0 FROM c;`;

test('sqlite3 on a database in the lower layers, rollback journal then WAL, and after a remount', async (t) => {
  if (!requireMountCapable(t)) return;
  if (!requireTools(t, ['sqlite3', 'setfattr', 'getfattr'])) return;
  const env = await toolEnv();
  const template = path.join(await space.dir('sqlite-template'), 'app.db');
  const mk = await exec('sqlite3', ['-batch', template], { env, input: SQL_CREATE });
  t.is(mk.code, 0, `creating the database: ${mk.stderr}`);
  const layers: LayerSpec[] = [
    { entries: [{ type: 'file', path: 'db/notes', content: 'the database is below\n' }] },
    { entries: [{ type: 'file', path: 'db/app.db', content: fs.readFileSync(template) }] },
  ];
  const sql = (tr: Transcript, what: string, input: string) => tr.run('sqlite3', ['-batch', 'db/app.db'], { input, what: `sqlite3: ${what}` });

  const finalSummary = new Map<Transcript, string>();
  const [k, s] = await bothSides('sqlite', layers, env, async (tr) => {
    await sql(tr, 'insert', "INSERT INTO t(name, v) VALUES ('alpha', 1.0), ('beta', 2.5);");
    await sql(tr, 'transaction', `BEGIN;\n${rows(1500, 'tx')}\nUPDATE t SET v = v * 2 WHERE id % 7 = 0;\nDELETE FROM t WHERE id % 11 = 0;\nCOMMIT;\n${SQL_SUMMARY}`);
    await sql(tr, 'rolled back', `BEGIN;\nDELETE FROM t;\n${rows(100, 'gone')}\nROLLBACK;\n${SQL_SUMMARY}`);
    tr.check('integrity (rollback journal)', (await sql(tr, 'integrity_check', 'PRAGMA integrity_check;')).stdout, 'ok\n');
    tr.check('journal_mode', (await sql(tr, 'to WAL', 'PRAGMA journal_mode=WAL;')).stdout, 'wal\n');
    // A second process reads while the first holds the WAL and its shared-memory index open: the
    // -shm file is mapped shared by both, through the mount.
    await sql(tr, 'WAL writes with a concurrent reader', [
      'BEGIN;', rows(800, 'wal'), 'COMMIT;',
      `.shell sqlite3 -batch db/app.db "${SQL_SUMMARY}"`,
      "UPDATE t SET name = upper(name) WHERE id % 13 = 0;",
      `.shell sqlite3 -batch db/app.db "${SQL_SUMMARY} PRAGMA integrity_check;"`,
      SQL_SUMMARY,
    ].join('\n'));
    tr.check('integrity (WAL)', (await sql(tr, 'integrity_check', 'PRAGMA integrity_check;')).stdout, 'ok\n');
    finalSummary.set(tr, (await sql(tr, 'summary', SQL_SUMMARY)).stdout);
  });
  verdict(t, k, s);

  // The data is in the subject's upper layer: remounted by either implementation, it reads the same.
  for (const impl of ['layerfs', 'kernel'] as const) {
    const out = await mountWith(impl, s.branches, async (mnt) => {
      const r = await exec('sqlite3', ['-batch', path.join(mnt, 'db/app.db')], { env, input: `PRAGMA integrity_check;\nPRAGMA journal_mode;\n${SQL_SUMMARY}` });
      return `exit ${r.code}: ${r.stdout}${r.stderr}`;
    });
    t.is(out, `exit 0: ok\nwal\n${finalSummary.get(s.tr) ?? '(none)'}`, `${s.label}'s upper remounted with ${impl}`);
  }
});
