// Differential tests of the WRITABLE mode (lowerdir + upperdir + workdir): the kernel's overlayfs is
// the oracle.
//
// For each scenario: the same lower layers (kernel format) are built twice, each with its own empty
// upper and work directories; one set is mounted with the kernel's overlayfs (pinned options, see
// helpers/mounts.ts), the other with layerfs. The scenario's steps run on each mount (Node fs calls
// from this process, or small spawned tools: mkfifo, setfattr), and each step's outcome ("ok",
// "ok <value>", an errno code, or "exit N: <stderr>") is recorded. Then we require:
//   1. step-by-step equal outcomes;
//   2. equal merged trees (snapshot of each mount, with xattrs and contents);
//   3. after unmounting, equal upper directories: kernel bookkeeping xattrs (trusted.overlay.* other
//      than trusted.overlay.opaque) are ignored and whiteouts (char 0:0) are compared as the type
//      "whiteout" only (their mode, owner, times and link count are the implementation's business).
//   4. the same names sharing an inode, and each name showing the number of the same lower entry
//      (or of none); on layerfs, every readdir d_ino equal to its lstat st_ino;
//   5. after unmounting, the same `layerfs diff` of the two uppers (without lowers); a second
//      layerfs mount showing what the first showed at its end, inode numbers included; and the
//      kernel showing the same tree from layerfs's upper (an OCI one converted first).
// Every scenario runs on layerfs three times: the default engine, engine=libfuse, whiteout=oci.
// Timestamps set "now" by a step cannot be equal between two runs: every mtime later than the start
// of the test file is replaced by the marker "recent" (so "kept the lower mtime" vs "set to now"
// still counts as a difference; explicit utimes use fixed old dates).
//
// Random sequences: a fast-check property replays up to 30 random operations over a small name
// space on both mounts; on a divergence fast-check shrinks the sequence to a short reproducer,
// which then goes into REGRESSIONS (replayed first in every run).
//
// Environment:
//   LAYERFS_DIFF_SUBJECT=kernel   run a second kernel overlay instead of layerfs (validates the suite)
//   LAYERFS_WRITABLE_CASES=a,b    run only the named scenarios ("random" is the fast-check property)
//   LAYERFS_WRITABLE_SEED=N       fast-check seed (default fixed, so that CI runs are repeatable)
//   LAYERFS_WRITABLE_RUNS=N       random sequences per run (default 12)
//   LAYERFS_WRITABLE_RUNS_OCI=N   those of "random-oci", with the upper in OCI's format (default half)
//   LAYERFS_WRITABLE_OPTIONS=a,b  more layerfs mount options in the random properties (engine=libfuse)
//   LAYERFS_WRITABLE_SHRINK_MS=N  time budget for the run and the shrinking (default 15 min)
//   LAYERFS_WRITABLE_IGNORE_DIR_MTIME=1  do not compare directory mtimes (to triage past a known
//                                 parent-mtime divergence)
//   LAYERFS_WRITABLE_FORCE=1      compare with layerfs even when the write probe fails
// While layerfs cannot write yet (probe: touch a file in a writable mount), only the kernel side runs
// (with its expected outcomes checked) and each test logs that; under CI=true that is a failure.

import test from 'ava';
import fc from 'fast-check';
import type { ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { isCI, requireMountCapable, scratch } from '../helpers/env.js';
import { buildLayers, ociToKernel, type LayerSpec } from '../helpers/layers.js';
import { withKernelOverlay, withLayerfs } from '../helpers/mounts.js';
import { upperChanges } from '../../src/layer/changes.js';
import { diffSnapshots, dinoMismatches, inodeGroupDiffs, inodeGroups, run, snapshot, type Snapshot } from '../helpers/tree.js';

const space = scratch(test);
const T_START = Date.now() - 60_000;
const FIXED_TIME = new Date(Date.UTC(2019, 5, 1, 12, 0, 0));
const only = (process.env['LAYERFS_WRITABLE_CASES'] ?? '').split(',').filter((s) => s !== '');
const selected = (name: string) => only.length === 0 || only.includes(name);
const IGNORE_DIR_MTIME = process.env['LAYERFS_WRITABLE_IGNORE_DIR_MTIME'] === '1';
const SUBJECT_ENV = process.env['LAYERFS_DIFF_SUBJECT'] === 'kernel' ? 'kernel' : 'layerfs';

// ---------------------------------------------------------------------------------------------
// Layers

/** The lower layers of every scenario (top first). */
function baseLayers(): LayerSpec[] {
  return [
    {
      entries: [
        { type: 'file', path: 'd/a.txt', content: 'A-top\n' },
        { type: 'file', path: 'd/b.txt', content: 'B\n' },
        { type: 'file', path: 'd/sub/x', content: 'x\n' },
        { type: 'file', path: 'e/y', content: 'y\n' },
        { type: 'file', path: 'f1', content: 'file1\n' },
        { type: 'file', path: 'f2', content: 'file2\n', mode: 0o600 },
        { type: 'symlink', path: 'ln', target: 'd/a.txt' },
      ],
    },
    {
      entries: [
        { type: 'file', path: 'd/a.txt', content: 'A-bottom\n' },
        { type: 'file', path: 'd/c.txt', content: 'C\n', xattrs: { 'user.origin': 'bottom' } },
        { type: 'file', path: 'd/sub/m', content: 'm\n' },
        { type: 'file', path: 'e/w', content: 'w\n' },
        { type: 'file', path: 'g/z', content: 'z\n' },
        { type: 'file', path: 'f3', content: 'f3-bottom\n' },
        { type: 'dir', path: 'h' },
        { type: 'file', path: 'k/l1', content: 'L\n' },
        { type: 'hardlink', path: 'k/l2', target: 'k/l1' },
        { type: 'hardlink', path: 'k/gz', target: 'g/z' },
      ],
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Steps

type At = (rel: string) => string;
interface Step {
  /** Human-readable description (also the reproducer line). */
  desc: string;
  fn: (at: At, mnt: string) => Promise<string | void>;
  /** Expected kernel outcome: "ok" (any ok) or an errno code / "exit N" prefix. Checked on the kernel only. */
  expect?: string;
}

async function outcomeOf(step: Step, at: At, mnt: string): Promise<string> {
  try {
    const v = await step.fn(at, mnt);
    return v === undefined ? 'ok' : `ok ${v}`;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return err.code ?? String(err.message).split(mnt).join('MNT');
  }
}

/** Run a command; ok, or "exit N: stderr" with the mount path replaced by MNT. */
async function sh(cmd: string, args: string[], mnt: string): Promise<string | void> {
  const r = await run(cmd, args, { timeoutMs: 30_000, env: { ...process.env, LC_ALL: 'C' } });
  const out = r.stdout.toString('utf8').split(mnt).join('MNT').trim();
  if (r.code !== 0) {
    const e = new Error(`exit ${r.code ?? r.signal}: ${r.stderr.split(mnt).join('MNT').trim()}`);
    throw e;
  }
  return out === '' ? undefined : out;
}

// Opens carry O_NONBLOCK, which a regular file ignores: where a random sequence made a FIFO, an
// open for reading gets no writer and reads nothing, one for writing gets no reader and fails
// with ENXIO, where both would otherwise wait forever.
const { O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC, O_APPEND, O_EXCL, O_NONBLOCK } = fs.constants;

async function writeVia(file: string, flags: number, data: string): Promise<void> {
  const fh = await fsp.open(file, flags | O_NONBLOCK, 0o666);
  try { await fh.write(data); } finally { await fh.close(); }
}

// renameat2(RENAME_EXCHANGE) through glibc's wrapper (Node has no renameat2): the errno's name, or
// nothing on success.
const EXCHANGE_SCRIPT = `
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), 2) != 0:
    print(errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()))
`;

const S = {
  writeAt: (p: string, data: string, offset = 0): Step => ({
    desc: `write ${JSON.stringify(data)} at ${offset} into ${p} (open r+)`,
    fn: async (at) => {
      const fh = await fsp.open(at(p), 'r+');
      try { await fh.write(data, offset); } finally { await fh.close(); }
    },
  }),
  writeFile: (p: string, data: string): Step => ({
    desc: `writeFile ${p} ${JSON.stringify(data)} (O_CREAT|O_TRUNC)`,
    fn: (at) => writeVia(at(p), O_WRONLY | O_CREAT | O_TRUNC, data),
  }),
  append: (p: string, data: string): Step => ({
    desc: `appendFile ${p} ${JSON.stringify(data)}`,
    fn: (at) => writeVia(at(p), O_WRONLY | O_CREAT | O_APPEND, data),
  }),
  truncate: (p: string, len: number): Step => ({
    desc: `truncate ${p} to ${len}`,
    fn: (at) => fsp.truncate(at(p), len),
  }),
  createExcl: (p: string, data = 'new\n'): Step => ({
    desc: `create ${p} with O_EXCL`,
    fn: (at) => writeVia(at(p), O_WRONLY | O_CREAT | O_EXCL, data),
  }),
  read: (p: string): Step => ({
    desc: `read ${p}`,
    fn: async (at) => {
      const fh = await fsp.open(at(p), O_RDONLY | O_NONBLOCK);
      try { return JSON.stringify(await fh.readFile('utf8')); } finally { await fh.close(); }
    },
  }),
  stat: (p: string): Step => ({
    desc: `lstat ${p}`,
    fn: async (at) => {
      const s = await fsp.lstat(at(p));
      const kind = s.isFile() ? 'file' : s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'symlink' : s.isFIFO() ? 'fifo' : 'other';
      const nlink = s.isDirectory() ? '' : ` nlink=${s.nlink}`;
      return `${kind} mode=0${(s.mode & 0o7777).toString(8)} uid=${s.uid} gid=${s.gid} size=${s.isDirectory() ? '-' : s.size}${nlink}`;
    },
  }),
  readdir: (p: string): Step => ({
    desc: `readdir ${p === '' ? '/' : p}`,
    fn: async (at) => (await fsp.readdir(at(p))).sort().join(','),
  }),
  unlink: (p: string): Step => ({ desc: `unlink ${p}`, fn: (at) => fsp.unlink(at(p)) }),
  mkdir: (p: string): Step => ({ desc: `mkdir ${p}`, fn: (at) => fsp.mkdir(at(p)).then(() => undefined) }),
  rmdir: (p: string): Step => ({ desc: `rmdir ${p}`, fn: (at) => fsp.rmdir(at(p)) }),
  rmrf: (p: string): Step => ({ desc: `rm -r ${p} (fs.rm recursive)`, fn: (at) => fsp.rm(at(p), { recursive: true }) }),
  rename: (a: string, b: string): Step => ({ desc: `rename ${a} -> ${b}`, fn: (at, mnt) => moveDir(at(a), at(b), mnt) }),
  symlink: (target: string, p: string): Step => ({ desc: `symlink ${p} -> ${target}`, fn: (at) => fsp.symlink(target, at(p)) }),
  readlink: (p: string): Step => ({ desc: `readlink ${p}`, fn: async (at) => fsp.readlink(at(p)) }),
  link: (a: string, b: string): Step => ({ desc: `link ${a} ${b}`, fn: (at) => fsp.link(at(a), at(b)) }),
  exchange: (a: string, b: string): Step => ({
    desc: `renameat2 ${a} ${b} RENAME_EXCHANGE (spawn)`,
    fn: async (at) => {
      const r = await run('python3', ['-c', EXCHANGE_SCRIPT, at(a), at(b)], { timeoutMs: 30_000 });
      const code = r.stdout.toString('utf8').trim();
      if (r.code !== 0) throw new Error(`python3 exited ${r.code}: ${r.stderr.trim()}`);
      if (code !== '') throw Object.assign(new Error(code), { code });
    },
  }),
  chmod: (p: string, mode: number): Step => ({ desc: `chmod 0${mode.toString(8)} ${p}`, fn: (at) => fsp.chmod(at(p), mode) }),
  chown: (p: string, uid: number, gid: number): Step => ({ desc: `lchown ${uid}:${gid} ${p}`, fn: (at) => fsp.lchown(at(p), uid, gid) }),
  utimes: (p: string): Step => ({ desc: `utimes ${p} ${FIXED_TIME.toISOString()}`, fn: (at) => fsp.utimes(at(p), FIXED_TIME, FIXED_TIME) }),
  mkfifo: (p: string): Step => ({ desc: `mkfifo ${p} (spawn)`, fn: (at, mnt) => sh('mkfifo', [at(p)], mnt) }),
  setfattr: (p: string, name: string, value: string): Step => ({
    desc: `setfattr -n ${name} -v ${value} ${p} (spawn)`,
    fn: (at, mnt) => sh('setfattr', ['-h', '-n', name, '-v', value, at(p)], mnt),
  }),
  removexattr: (p: string, name: string): Step => ({
    desc: `setfattr -x ${name} ${p} (spawn)`,
    fn: (at, mnt) => sh('setfattr', ['-h', '-x', name, at(p)], mnt),
  }),
  getfattr: (p: string): Step => ({
    desc: `getfattr -d -m user. ${p} (spawn)`,
    fn: (at, mnt) => sh('getfattr', ['-h', '-d', '-m', '^user\\.', '--absolute-names', at(p)], mnt),
  }),
};
const expect = (s: Step, e: string): Step => ({ ...s, expect: e });

/**
 * The outcome of a directory rename that the kernel refused with EXDEV and GNU mv then did by
 * copying. layerfs moves such directories itself (D16): its "ok" against this outcome is the one
 * deliberate divergence, and a sequence that has one cannot have the same upper dir (the kernel's
 * holds mv's copy, made file by file); the merged trees must still be equal, and the kernel must
 * show the same tree from layerfs's upper.
 */
const MOVED = 'ok EXDEV, then mv copied';

/** rename(2); where it fails with EXDEV on a directory, what a user's `mv` does next. */
async function moveDir(from: string, to: string, mnt: string): Promise<string | void> {
  try {
    await fsp.rename(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    try {
      await sh('mv', ['-T', from, to], mnt);
    } catch (m) {
      // mv's copy refuses a non-empty target with this message: the errno rename(2) would give.
      if (String((m as Error).message).endsWith('Directory not empty')) throw Object.assign(new Error('ENOTEMPTY'), { code: 'ENOTEMPTY' });
      throw m;
    }
    return MOVED.slice(3);
  }
}

interface Scenario {
  name: string;
  steps: Step[];
  /** Kernel-side sanity check of the upper dir after unmount (infrastructure). */
  upperCheck?: (upper: Snapshot) => string[];
  /** Not run with engine=libfuse, for a reason the README's Limits give. */
  notLibfuse?: string;
}

const SCENARIOS: Scenario[] = [
  { name: 'copy-up-write', steps: [expect(S.writeAt('d/a.txt', 'XY'), 'ok'), S.read('d/a.txt'), S.writeAt('f1', 'Z', 10), S.read('f1'), S.stat('f1')] },
  { name: 'append', steps: [expect(S.append('d/c.txt', 'more\n'), 'ok'), S.append('d/c.txt', 'again\n'), S.read('d/c.txt'), S.getfattr('d/c.txt')] },
  { name: 'truncate', steps: [expect(S.truncate('d/a.txt', 3), 'ok'), S.truncate('f3', 0), S.truncate('f1', 100), S.read('d/a.txt'), S.stat('f1')] },
  { name: 'create-in-lower-dir', steps: [expect(S.writeFile('d/new.txt', 'new\n'), 'ok'), S.writeFile('d/sub/deep', 'deep\n'), S.createExcl('g/n2'), S.readdir('d'), S.readdir('g'), S.stat('d/new.txt')] },
  { name: 'create-excl-existing', steps: [expect(S.createExcl('d/a.txt'), 'EEXIST'), expect(S.createExcl('d/c.txt'), 'EEXIST'), expect(S.createExcl('d'), 'EEXIST'), expect(S.createExcl('ln'), 'EEXIST'), S.read('d/a.txt')] },
  { name: 'unlink-lower', steps: [expect(S.unlink('d/b.txt'), 'ok'), expect(S.unlink('d/c.txt'), 'ok'), expect(S.unlink('d/a.txt'), 'ok'), expect(S.stat('d/b.txt'), 'ENOENT'), S.readdir('d'), expect(S.unlink('d/b.txt'), 'ENOENT'), expect(S.unlink('d'), 'EISDIR'), S.unlink('ln')] },
  { name: 'unlink-upper-only', steps: [S.writeFile('n.txt', 'n\n'), expect(S.unlink('n.txt'), 'ok'), S.writeFile('d/n2', 'n2\n'), S.unlink('d/n2'), S.readdir(''), S.readdir('d')] },
  { name: 'unlink-recreate', steps: [S.unlink('d/a.txt'), expect(S.writeFile('d/a.txt', 'recreated\n'), 'ok'), S.read('d/a.txt'), S.unlink('f1'), S.mkdir('f1'), S.writeFile('f1/inner', 'i\n'), S.readdir('f1'), S.stat('f1')] },
  {
    name: 'mkdir-over-deleted-dir',
    steps: [expect(S.rmrf('d'), 'ok'), expect(S.stat('d'), 'ENOENT'), expect(S.mkdir('d'), 'ok'), S.readdir('d'), S.writeFile('d/q', 'q\n'), S.readdir('d'), S.rmrf('g'), S.mkdir('g'), S.readdir('g')],
    upperCheck: (u) => {
      const out: string[] = [];
      for (const v of ['/d', '/g']) if (u.nodes.get(v)?.xattrs?.['trusted.overlay.opaque'] === undefined) out.push(`${v}: kernel upper has no trusted.overlay.opaque`);
      return out;
    },
  },
  { name: 'rmdir-nonempty', steps: [expect(S.rmdir('d'), 'ENOTEMPTY'), expect(S.rmdir('g'), 'ENOTEMPTY'), expect(S.rmdir('d/sub'), 'ENOTEMPTY'), S.readdir('d')] },
  { name: 'rmdir-emptied-lower-dir', steps: [S.unlink('e/y'), S.unlink('e/w'), S.readdir('e'), expect(S.rmdir('e'), 'ok'), expect(S.stat('e'), 'ENOENT'), expect(S.rmdir('h'), 'ok'), S.readdir(''), S.mkdir('e'), S.readdir('e')] },
  {
    name: 'chmod-chown-utimes',
    steps: [
      expect(S.chmod('d/c.txt', 0o600), 'ok'), S.stat('d/c.txt'), expect(S.chown('d/a.txt', 1000, 1001), 'ok'), S.stat('d/a.txt'),
      expect(S.utimes('f1'), 'ok'), S.chmod('g', 0o700), S.utimes('g'), S.chown('ln', 1000, 1000), S.stat('ln'), S.chmod('f2', 0o4755), S.stat('f2'),
    ],
  },
  { name: 'symlink', steps: [expect(S.symlink('d/a.txt', 's1'), 'ok'), S.symlink('../f1', 'd/s2'), S.readlink('s1'), S.read('d/s2'), expect(S.symlink('x', 'd/a.txt'), 'EEXIST'), S.readdir('d')] },
  { name: 'mkfifo', steps: [expect(S.mkfifo('d/fifo'), 'ok'), S.stat('d/fifo'), expect(S.mkfifo('d/a.txt'), 'exit 1'), S.mkfifo('newfifo'), S.readdir('')] },
  {
    name: 'hardlink',
    steps: [expect(S.link('d/c.txt', 'd/c-link'), 'ok'), S.stat('d/c.txt'), S.stat('d/c-link'), S.link('f1', 'e/f1-link'), S.append('e/f1-link', 'via link\n'), S.read('f1'), S.stat('f1'), expect(S.link('d/a.txt', 'f2'), 'EEXIST'), expect(S.link('d', 'd2'), 'EPERM')],
  },
  {
    // Two names of one lower file: layerfs lets the kernel keep their attributes (D58). A change
    // through one name copies that one up apart; the other must still show the lower file, here
    // where the kernel has just kept both.
    name: 'lower-hardlinks',
    steps: [
      S.stat('k/l1'), S.stat('k/l2'), expect(S.chmod('k/l1', 0o600), 'ok'), S.stat('k/l1'), S.stat('k/l2'),
      S.append('k/l2', 'more\n'), S.read('k/l1'), S.read('k/l2'), S.stat('k/l1'), S.stat('k/l2'),
      expect(S.link('k/l2', 'k/l3'), 'ok'), S.stat('k/l2'), S.stat('k/l3'), S.append('k/l3', 'again\n'), S.stat('k/l2'), S.read('k/l2'),
      expect(S.unlink('k/l1'), 'ok'), S.stat('k/l2'), S.readdir('k'),
    ],
  },
  {
    // A copy of one name of a lower file with several is another file: it must not share the
    // number the names left below still show (tar would store one as a hard link to the other).
    name: 'lower-hardlink-numbers',
    steps: [
      expect(S.append('k/l1', 'l1\n'), 'ok'), S.stat('k/l1'), S.stat('k/l2'), expect(S.link('k/l1', 'k/l3'), 'ok'), S.stat('k/l3'),
      expect(S.rename('g', 'g2'), MOVED), S.append('g2/z', 'moved\n'), S.read('k/gz'), S.stat('g2/z'), S.stat('k/gz'),
    ],
  },
  {
    // renameat2(RENAME_EXCHANGE) of files in two directories: both copied up, swapped, and each
    // keeps its inode number in its new directory (d_ino too, D79).
    name: 'exchange',
    notLibfuse: 'renameat2 flags: EINVAL (libfuse 2 has no rename2)',
    steps: [
      expect(S.exchange('f1', 'd/a.txt'), 'ok'), S.read('f1'), S.read('d/a.txt'), S.readdir('d'), S.stat('f1'),
      expect(S.exchange('e/y', 'g/nothere'), 'ENOENT'), expect(S.exchange('d', 'e'), 'EXDEV'),
      // A copy swapped into a directory only the upper has (no copy-up marked it impure).
      S.mkdir('u'), S.writeFile('u/n', 'n\n'), S.writeAt('f2', 'W'), expect(S.exchange('f2', 'u/n'), 'ok'), S.readdir('u'), S.stat('u/n'),
    ],
  },
  { name: 'rename-over', steps: [expect(S.rename('f1', 'f2'), 'ok'), S.read('f2'), expect(S.stat('f1'), 'ENOENT'), S.rename('d/a.txt', 'd/c.txt'), S.read('d/c.txt'), S.readdir('d'), S.readdir('')] },
  { name: 'rename-into-dir', steps: [expect(S.rename('d/b.txt', 'e/b.txt'), 'ok'), S.rename('f3', 'g/f3'), S.rename('d/c.txt', 'h/c.txt'), S.readdir('d'), S.readdir('e'), S.readdir('g'), S.read('g/f3'), S.getfattr('h/c.txt')] },
  { name: 'setxattr', steps: [expect(S.setfattr('d/a.txt', 'user.k', 'v1'), 'ok'), S.setfattr('d/c.txt', 'user.origin', 'changed'), S.setfattr('g', 'user.dir', 'yes'), S.getfattr('d/a.txt'), S.getfattr('d/c.txt'), S.read('d/a.txt')] },
  {
    // Directories that lower branches have: the kernel answers EXDEV (mv then copies the tree);
    // layerfs moves them itself (D16). See moveDir below.
    name: 'rename-dir',
    steps: [
      expect(S.rename('g', 'g2'), MOVED), expect(S.rename('d/sub', 'sub2'), MOVED), S.readdir('sub2'), S.read('sub2/x'),
      expect(S.rename('d', 'e/d'), MOVED), S.readdir('e'), S.readdir('e/d'), expect(S.rename('h', 'g'), MOVED), S.readdir(''),
      S.mkdir('u'), S.writeFile('u/f', 'f\n'), expect(S.rename('u', 'u2'), 'ok'), S.readdir('u2'), S.rename('u2', 'e/d/u3'),
      expect(S.rename('e', 'd'), MOVED), S.readdir('d'), S.readdir('d/d'), S.read('d/d/u3/f'), S.stat('d/d/a.txt'),
    ],
  },
  {
    name: 'rename-dir-over-empty-dir',
    steps: [
      expect(S.rename('d', 'e'), 'ENOTEMPTY'), S.unlink('d/sub/x'), S.unlink('d/sub/m'), S.readdir('d/sub'),
      expect(S.rename('g', 'd/sub'), MOVED), S.readdir('d/sub'), expect(S.rename('e', 'h'), MOVED), S.readdir('h'), S.readdir(''),
      expect(S.rename('d', 'd/sub/in'), 'EINVAL'), expect(S.rename('d', 'f1'), 'ENOTDIR'),
    ],
  },
  {
    name: 'rename-dir-with-upper-changes',
    steps: [
      S.writeAt('d/a.txt', 'UP'), S.link('d/c.txt', 'd/c2'), S.mkdir('d/new'), S.writeFile('d/new/n', 'n\n'), S.unlink('d/b.txt'),
      S.symlink('a.txt', 'd/s'), S.setfattr('d', 'user.moved', 'yes'), S.chmod('d/sub', 0o700),
      expect(S.rename('d', 'moved'), MOVED), S.readdir('moved'), S.read('moved/a.txt'), S.stat('moved/c2'), S.stat('moved/c.txt'),
      S.getfattr('moved'), S.stat('moved/sub'), expect(S.stat('d'), 'ENOENT'), S.mkdir('d'), S.readdir('d'),
    ],
  },
  {
    // A pure-upper directory moved into a merged directory, over the whiteout of a deleted lower
    // directory: the kernel marks it opaque, otherwise the lower directory's entries would show again.
    name: 'rename-upper-dir-over-deleted-dir',
    steps: [
      expect(S.rmrf('d/sub'), 'ok'), S.mkdir('u'), S.writeFile('u/f', 'f\n'), expect(S.rename('u', 'd/sub'), 'ok'), S.readdir('d/sub'),
      S.rmrf('g'), S.mkdir('v'), S.rename('v', 'g'), S.readdir('g'),
    ],
  },
  {
    name: 'rename-over-whiteout',
    steps: [
      S.unlink('f1'), expect(S.rename('f2', 'f1'), 'ok'), S.read('f1'), S.unlink('d/b.txt'), S.mkdir('w'), expect(S.rename('w', 'd/b.txt'), 'ok'),
      S.stat('d/b.txt'), S.unlink('d/c.txt'), S.symlink('a.txt', 'd/c.txt'), S.readlink('d/c.txt'),
    ],
  },
];

// ---------------------------------------------------------------------------------------------
// Random sequences (fast-check)
//
// An operation is plain data (so that fast-check can shrink a list of them and print it); half of
// the paths name something the lower layers have, so that most operations do something.

const DIRS = ['', 'd', 'e', 'g', 'h', 'n', 'd/sub'] as const;
const NAMES = ['a.txt', 'b.txt', 'c.txt', 'x', 'sub', 'y'] as const;
const LOWER_FILES = ['d/a.txt', 'd/b.txt', 'd/c.txt', 'd/sub/x', 'd/sub/m', 'e/y', 'e/w', 'g/z', 'f1', 'f2', 'f3', 'ln', 'k/l1', 'k/l2'] as const;
const LOWER_DIRS = ['d', 'e', 'g', 'h', 'k', 'd/sub'] as const;

const filePath = fc.oneof(
  fc.constantFrom(...LOWER_FILES),
  fc.tuple(fc.constantFrom(...DIRS), fc.constantFrom(...NAMES)).map(([d, n]) => (d === '' ? n : `${d}/${n}`)),
);
const anyPath = fc.oneof({ arbitrary: filePath, weight: 3 }, { arbitrary: fc.constantFrom(...LOWER_DIRS, 'n'), weight: 2 });
const data = fc.constantFrom('1\n', 'two\n', 'three-3\n');

type Op =
  | ['writeAt', string, string, number] | ['append', string, string] | ['truncate', string, number]
  | ['createExcl', string, string] | ['writeFile', string, string] | ['unlink', string] | ['mkdir', string]
  | ['rmdir', string] | ['rmrf', string] | ['rename', string, string] | ['symlink', string, string]
  | ['link', string, string] | ['chmod', string, number] | ['utimes', string] | ['setfattr', string, string]
  | ['removexattr', string, string] | ['mkfifo', string] | ['exchange', string, string]
  | ['readdir', string] | ['read', string] | ['stat', string];

const commonOps: fc.Arbitrary<Op>[] = [
  fc.tuple(fc.constant('writeAt' as const), filePath, data, fc.nat(3)),
  fc.tuple(fc.constant('append' as const), filePath, data),
  fc.tuple(fc.constant('truncate' as const), filePath, fc.nat(5)),
  fc.tuple(fc.constant('createExcl' as const), filePath, data),
  fc.tuple(fc.constant('writeFile' as const), filePath, data),
  fc.tuple(fc.constant('unlink' as const), filePath),
  fc.tuple(fc.constant('mkdir' as const), anyPath),
  fc.tuple(fc.constant('rmdir' as const), anyPath),
  fc.tuple(fc.constant('rmrf' as const), anyPath),
  fc.tuple(fc.constant('rename' as const), filePath, filePath),
  fc.tuple(fc.constant('rename' as const), anyPath, anyPath),
  fc.tuple(fc.constant('symlink' as const), fc.constantFrom('a.txt', '../f1', 'nowhere'), filePath),
  fc.tuple(fc.constant('link' as const), filePath, filePath),
  fc.tuple(fc.constant('chmod' as const), anyPath, fc.constantFrom(0o600, 0o755, 0o640)),
  fc.tuple(fc.constant('utimes' as const), anyPath),
  fc.tuple(fc.constant('setfattr' as const), anyPath, data.map((v) => v.trim())),
  // user.r is the name setfattr sets; d/c.txt has user.origin from its lower layer
  fc.tuple(fc.constant('removexattr' as const), anyPath, fc.constantFrom('user.r', 'user.origin')),
  fc.tuple(fc.constant('mkfifo' as const), filePath),
  fc.tuple(fc.constant('readdir' as const), fc.constantFrom(...DIRS)),
  fc.tuple(fc.constant('read' as const), filePath),
  fc.tuple(fc.constant('stat' as const), anyPath),
];
/** The draw; renameat2's RENAME_EXCHANGE only where the engine has it (not engine=libfuse). */
const opArbFor = (options: readonly string[]): fc.Arbitrary<Op> =>
  fc.oneof(...commonOps, ...(options.includes('engine=libfuse') ? [] : [fc.tuple(fc.constant('exchange' as const), anyPath, anyPath)]));

function stepOf(op: Op): Step {
  switch (op[0]) {
    case 'writeAt': return S.writeAt(op[1], op[2], op[3]);
    case 'append': return S.append(op[1], op[2]);
    case 'truncate': return S.truncate(op[1], op[2]);
    case 'createExcl': return S.createExcl(op[1], op[2]);
    case 'writeFile': return S.writeFile(op[1], op[2]);
    case 'unlink': return S.unlink(op[1]);
    case 'mkdir': return S.mkdir(op[1]);
    case 'rmdir': return S.rmdir(op[1]);
    case 'rmrf': return S.rmrf(op[1]);
    case 'rename': return S.rename(op[1], op[2]);
    case 'symlink': return S.symlink(op[1], op[2]);
    case 'link': return S.link(op[1], op[2]);
    case 'chmod': return S.chmod(op[1], op[2]);
    case 'utimes': return S.utimes(op[1]);
    case 'setfattr': return S.setfattr(op[1], 'user.r', op[2]);
    case 'removexattr': return S.removexattr(op[1], op[2]);
    case 'mkfifo': return S.mkfifo(op[1]);
    case 'exchange': return S.exchange(op[1], op[2]);
    case 'readdir': return S.readdir(op[1]);
    case 'read': return S.read(op[1]);
    case 'stat': return S.stat(op[1]);
  }
}

/**
 * Sequences that once diverged (found by the random test, shrunk by fast-check), replayed first in
 * every run. Add the reproducer of every new divergence here when fixing it. (Those found before
 * fast-check came in are scenarios above: rename-over-whiteout, rename-upper-dir-over-deleted-dir.)
 */
const REGRESSIONS: Op[][] = [
  // A move of a directory holding two names of one lower file: mv's copy on the kernel splits
  // them, layerfs's move keeps them one file (movedLinks).
  [['rename', 'k', 'a.txt'], ['utimes', 'a.txt']],
  // whiteout=oci: a directory renamed over a whiteout got its .wh..wh..opq marker and with it a
  // new mtime (random-oci, seed 6004).
  [['rename', 'd', 'h/a.txt'], ['rename', 'k/l1', 'a.txt'], ['rename', 'h/a.txt', 'k/l1'], ['readdir', '']],
];

// ---------------------------------------------------------------------------------------------
// Running one side

type Subject = 'kernel' | 'layerfs';

interface SideResult {
  outcomes: string[];
  merged: Snapshot;
  upper: Snapshot;
  /** Kernel: names listed but not lstat-able (whiteouts in single-branch dirs), dropped from merged. */
  phantoms: string[];
  /**
   * `layerfs diff UPPER` without lowers: judged by the upper's own records (whiteouts, opaque
   * marks, copy-up records), which differ in form between the kernel and layerfs.
   */
  changes: string[];
  /** Which lower entries each path of the merged tree is, by inode number (identities). */
  identity: Map<string, string>;
  /** Names whose d_ino differs from their st_ino (dinoMismatches). */
  dino: string[];
  /** Subject: how a second mount of the same branches differs from the first at its end. */
  remount?: string[];
  /** The format of the upper: the kernel's, or OCI's `.wh.` markers (`whiteout=oci`). */
  format: 'overlay' | 'oci';
  /** The subject's upper mounted by the kernel's overlayfs over the same lowers (interop). */
  crossMerged?: Snapshot;
}

function dropPhantoms(s: Snapshot): string[] {
  const gone: string[] = [];
  for (const [v, n] of s.nodes) if (n.type === 'phantom') gone.push(v);
  for (const v of gone) s.nodes.delete(v);
  return gone;
}

/**
 * Make two runs comparable: "recent" mtimes, problems without absolute paths. Inode numbers stay in
 * merged trees, for the relational check of compare (which names share one); an upper dir has none.
 */
function normalize(s: Snapshot, kind: 'merged' | 'upper'): Snapshot {
  for (const n of s.nodes.values()) {
    if (kind === 'upper') delete n.ino;
    if (n.mtimeMs !== undefined && n.mtimeMs >= T_START) n.mtimeMs = -1; // "recent"
    if (IGNORE_DIR_MTIME && n.type === 'dir') delete n.mtimeMs;
    if (kind === 'upper') {
      if (n.type === 'chardev' && n.rdev === '0:0') {
        for (const k of Object.keys(n) as (keyof typeof n)[]) delete n[k];
        (n as { type: string }).type = 'whiteout';
        continue;
      }
      if (n.xattrs !== undefined) {
        for (const k of Object.keys(n.xattrs)) {
          if (k.startsWith('trusted.overlay.') && k !== 'trusted.overlay.opaque') delete n.xattrs[k];
        }
      }
    }
  }
  s.problems = s.problems.map((p) => p.split(s.root).join('ROOT'));
  return s;
}

/** options: extra layerfs mount options (engine=libfuse). */
async function runSide(who: Subject, tag: string, steps: Step[], options: string[] = []): Promise<SideResult> {
  const base = await space.dir(`${tag}-${who}`);
  const layersRoot = path.join(base, 'layers');
  const upper = path.join(base, 'upper');
  const work = path.join(base, 'work');
  for (const d of [layersRoot, upper, work]) fs.mkdirSync(d);
  try {
    const built = await buildLayers(layersRoot, baseLayers(), { format: 'kernel' });
    const dirs = { lowers: built.dirs, upper, work, timeoutMs: 120_000 };
    const body = async (mnt: string) => {
      const at: At = (rel) => (rel === '' ? mnt : path.join(mnt, rel));
      const outcomes: string[] = [];
      for (const s of steps) outcomes.push(await outcomeOf(s, at, mnt));
      const merged = await snapshot(mnt, { xattrs: true, content: true });
      return { outcomes, merged, dino: await dinoMismatches(mnt) };
    };
    const { outcomes, merged, dino } = who === 'kernel' ? await withKernelOverlay(dirs, body) : await withLayerfs({ ...dirs, options }, body);
    const phantoms = dropPhantoms(merged);
    normalize(merged, 'merged');
    const up = normalize(await snapshot(upper, { xattrs: true, content: true }), 'upper');
    const changes = (await upperChanges(upper)).map((c) => `${c.kind} ${c.path}`);
    const identity = identities(lowerInos(built.dirs), merged);
    const format = options.includes('whiteout=oci') ? 'oci' : 'overlay';
    if (who === 'kernel') return { outcomes, merged, upper: up, phantoms, changes, identity, dino, format };
    // A second mount of the same branches must show what the first showed when it ended, inode
    // numbers included (D17): nothing of it may have lived only in the first server's memory.
    const again = normalize(await withLayerfs({ ...dirs, options }, (mnt) => snapshot(mnt, { xattrs: true, content: true })), 'merged');
    dropPhantoms(again);
    const remount = [
      ...diffSnapshots(merged, again, ['first mount', 'second mount']),
      ...[...merged.nodes].flatMap(([v, n]) => {
        const m = again.nodes.get(v);
        const ino = (x: string | undefined) => x?.slice(x.indexOf(':') + 1); // st_dev is each FUSE connection's
        return m === undefined || ino(n.ino) === ino(m.ino) ? [] : [`${v}: st_ino ${ino(n.ino)}, on the second mount ${ino(m.ino)}`];
      }),
    ];
    // The kernel must read what the subject wrote: mount its upper (fresh work dir) and look. An
    // OCI upper is first converted, as a runtime would (the kernel reads no `.wh.` markers).
    const work2 = path.join(base, 'work2');
    fs.mkdirSync(work2);
    let crossUpper = upper;
    if (format === 'oci') {
      crossUpper = path.join(base, 'upper-as-kernel');
      await ociToKernel(upper, crossUpper);
    }
    const cross = await withKernelOverlay({ ...dirs, upper: crossUpper, work: work2, options: [] }, (mnt) => snapshot(mnt, { xattrs: true, content: true }));
    dropPhantoms(cross);
    return { outcomes, merged, upper: up, phantoms, changes, identity, dino, remount, format, crossMerged: normalize(cross, 'merged') };
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
}

/**
 * The inode number of each path of the lower tree (its top-most entry), as both mounts show it
 * before any change: with all layers on one filesystem and xino=off the kernel shows the real
 * numbers of a lower entry, and so does layerfs (inode.ts, the upper's device first).
 */
function lowerInos(layers: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (root: string, rel: string) => {
    for (const d of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const v = `${rel}/${d.name}`;
      if (!out.has(v)) out.set(v, String(fs.lstatSync(path.join(root, v)).ino));
      if (d.isDirectory()) walk(root, v);
    }
  };
  for (const l of layers) walk(l, '');
  return out;
}

/**
 * For each path of the merged tree (the root aside), which lower paths showed its inode number
 * before the steps ("" for none): a copy-up keeps a file's number (the kernel's rule, D17 and
 * D78), a rename carries it, a new entry has its own. tar, git and rsync see this.
 */
function identities(lower: Map<string, string>, merged: Snapshot): Map<string, string> {
  const byIno = new Map<string, string[]>();
  for (const [v, ino] of lower) byIno.set(ino, [...(byIno.get(ino) ?? []), v]);
  const out = new Map<string, string>();
  for (const [v, n] of merged.nodes) {
    if (v === '/' || n.ino === undefined || n.type === 'phantom') continue;
    out.set(v, (byIno.get(n.ino.slice(n.ino.indexOf(':') + 1)) ?? []).sort().join(' = '));
  }
  return out;
}

/**
 * The one way hard links may differ after a directory move (MOVED): mv's copy on the kernel
 * renames file by file, and the kernel copies up each name of a lower file with several names
 * apart (index=off), where layerfs's move keeps them one file (D16), as rename(2) does. So a
 * kernel inode may be split where layerfs's is whole: every name of the kernel's group in
 * layerfs's. The names so excused, whose link counts then differ as well.
 */
function movedLinks(k: Snapshot, s: Snapshot): Set<string> {
  const gk = inodeGroups(k);
  const gs = inodeGroups(s);
  const out = new Set<string>();
  for (const [v, a] of gk) {
    const b = gs.get(v);
    if (b === undefined || a === b) continue;
    const names = new Set(b.split(' = '));
    if (a.split(' = ').every((n) => names.has(n))) out.add(v);
  }
  return out;
}

/** A copy of `s` without the link counts of `names`. */
function withoutNlink(s: Snapshot, names: Set<string>): Snapshot {
  if (names.size === 0) return s;
  const nodes = new Map(s.nodes);
  for (const v of names) {
    const n = nodes.get(v);
    if (n === undefined) continue;
    const { nlink: _, ...rest } = n;
    nodes.set(v, rest);
  }
  return { ...s, nodes };
}

/** Merged-tree differences: attributes and which names share an inode. */
function mergedDiffs(k: Snapshot, s: Snapshot, labels: [string, string], moved: boolean): string[] {
  const excused = moved ? movedLinks(k, s) : new Set<string>();
  return [
    ...diffSnapshots(withoutNlink(k, excused), withoutNlink(s, excused), labels),
    ...inodeGroupDiffs(k, s, labels, 50, (v) => excused.has(v)).map((d) => `hard links: ${d}`),
  ];
}

/** All differences between the oracle and the subject for one step list. */
function compare(k: SideResult, s: SideResult, steps: Step[], label: string): { firstStep: number | undefined; diffs: string[] } {
  const diffs: string[] = [];
  let firstStep: number | undefined;
  let moved = false;
  steps.forEach((st, i) => {
    if (k.outcomes[i] === MOVED && s.outcomes[i] === 'ok') moved = true; // the deliberate divergence
    else if (k.outcomes[i] !== s.outcomes[i]) {
      firstStep ??= i;
      diffs.push(`step ${i + 1} (${st.desc}): kernel ${k.outcomes[i]} vs ${label} ${s.outcomes[i]}`);
    }
  });
  const recent = (d: string) => d.replace(/(?<![0-9])-1 \(1969-12-31T23:59:59\.999Z\)/g, 'recent (set during the test)');
  for (const d of mergedDiffs(k.merged, s.merged, ['kernel', label], moved)) diffs.push(`merged tree: ${recent(d)}`);
  // After a directory move the upper dirs differ by design (mv's copy vs layerfs's); the merged
  // trees above and the kernel's view of layerfs's upper below still have to be equal.
  // (An OCI upper holds the same changes in another form: its view, its `diff` and its kernel
  // conversion are compared instead.)
  if (!moved && s.format === 'overlay') for (const d of diffSnapshots(k.upper, s.upper, ['kernel', label])) diffs.push(`upper dir: ${recent(d)}`);
  for (const [v, a] of k.identity) {
    const b = s.identity.get(v);
    // After a move, mv's copy on the kernel made new directories where layerfs moved them (D16).
    if (b === undefined || a === b || (moved && s.merged.nodes.get(v)?.type === 'dir')) continue;
    diffs.push(`inode number of ${v}: on the kernel that of [${a}] before the steps, on ${label} that of [${b}]`);
  }
  if (!moved && k.changes.join('\n') !== s.changes.join('\n')) {
    diffs.push(`layerfs diff without lowers: on the kernel's upper [${k.changes.join(', ')}], on ${label}'s [${s.changes.join(', ')}]`);
  }
  if (s.crossMerged) {
    for (const d of mergedDiffs(k.merged, s.crossMerged, ['kernel', `kernel on ${label}'s upper`], moved)) diffs.push(`${label}'s upper under the kernel: ${recent(d)}`);
  }
  for (const d of s.remount ?? []) diffs.push(`${label} mounted again: ${d}`);
  // Required of the subject whatever the kernel shows (the kernel's own are its business).
  for (const d of s.dino) diffs.push(`readdir's d_ino is not lstat's st_ino on ${label}: ${d}`);
  if (s.phantoms.length > 0 && label.startsWith('layerfs')) diffs.push(`layerfs lists unstatable names: ${s.phantoms.join(', ')}`);
  return { firstStep, diffs };
}

// ---------------------------------------------------------------------------------------------
// Is layerfs writable yet? (probed once per test file)

let writableProbe: Promise<{ ok: boolean; why: string }> | undefined;

function layerfsWritable(): Promise<{ ok: boolean; why: string }> {
  writableProbe ??= (async () => {
    const base = await space.dir('writable-probe');
    const [l, u, w] = ['l', 'u', 'w'].map((x) => path.join(base, x)) as [string, string, string];
    for (const d of [l, u, w]) fs.mkdirSync(d);
    fs.writeFileSync(path.join(l, 'f'), 'x');
    try {
      return await withLayerfs({ lowers: [l], upper: u, work: w, timeoutMs: 30_000 }, async (mnt) => {
        try {
          await fsp.writeFile(path.join(mnt, 'probe'), 'p');
          return { ok: true, why: '' };
        } catch (e) {
          return { ok: false, why: `touch on a writable mount: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
        }
      });
    } catch (e) {
      return { ok: false, why: (e as Error).message.split('\n')[0] ?? '' };
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  })();
  return writableProbe;
}

async function subjectFor(t: ExecutionContext): Promise<Subject | undefined> {
  if (SUBJECT_ENV === 'kernel') return 'kernel';
  if (process.env['LAYERFS_WRITABLE_FORCE'] === '1') return 'layerfs';
  const p = await layerfsWritable();
  if (p.ok) return 'layerfs';
  const msg = `layerfs writable mode not available (${p.why}): kernel side only`;
  if (isCI()) t.fail(msg);
  else t.log(msg);
  return undefined;
}

function kernelExpectations(k: SideResult, steps: Step[]): string[] {
  const out: string[] = [];
  steps.forEach((s, i) => {
    if (s.expect === undefined) return;
    const o = k.outcomes[i] ?? '(not run)';
    if (!(o === s.expect || o.startsWith(`${s.expect} `) || o.startsWith(`${s.expect}:`))) {
      out.push(`step ${i + 1} (${s.desc}): kernel gave ${o}, the scenario expects ${s.expect}`);
    }
  });
  return out;
}

function fail(t: ExecutionContext, what: string, diffs: string[]): void {
  if (diffs.length === 0) t.pass();
  else t.fail(`${what}:\n  ${diffs.join('\n  ')}`);
}

function reproducer(steps: Step[]): string {
  return steps.map((s, i) => `  ${i + 1}. ${s.desc}`).join('\n');
}

// ---------------------------------------------------------------------------------------------
// Tests

for (const sc of SCENARIOS) {
  if (!selected(sc.name)) continue;
  test(sc.name, async (t) => {
    if (!requireMountCapable(t)) return;
    const k = await runSide('kernel', sc.name, sc.steps);
    t.log(`kernel outcomes: ${k.outcomes.join(' | ')}`);
    if (k.phantoms.length > 0) t.log(`kernel lists unstatable whiteouts (known divergence, ignored): ${k.phantoms.join(', ')}`);
    fail(t, 'TEST INFRASTRUCTURE: kernel outcomes vs scenario expectations', kernelExpectations(k, sc.steps));
    if (sc.upperCheck) fail(t, 'TEST INFRASTRUCTURE: kernel upper dir', sc.upperCheck(k.upper));
    const who = await subjectFor(t);
    if (who === undefined) return;
    const label = who === 'kernel' ? 'kernel#2' : 'layerfs';
    const s = await runSide(who, sc.name, sc.steps);
    const { diffs } = compare(k, s, sc.steps, label);
    fail(t, `kernel vs ${label} (${sc.name})${diffs.length > 0 ? `\n  steps:\n${reproducer(sc.steps)}\n  differences` : ''}`, diffs);
    if (who !== 'layerfs') return;
    // The same through libfuse (engine=libfuse, D28): the fallback engine must agree too.
    if (sc.notLibfuse === undefined) {
      const l = await runSide(who, `${sc.name}-libfuse`, sc.steps, ['engine=libfuse']);
      const lib = compare(k, l, sc.steps, 'layerfs engine=libfuse');
      fail(t, `kernel vs layerfs engine=libfuse (${sc.name})${lib.diffs.length > 0 ? `\n  steps:\n${reproducer(sc.steps)}\n  differences` : ''}`, lib.diffs);
    } else {
      t.log(`not with engine=libfuse: ${sc.notLibfuse}`);
    }
    // And with the upper in OCI's format (whiteout=oci, D13): the same view.
    const o = await runSide(who, `${sc.name}-oci`, sc.steps, ['whiteout=oci']);
    const oci = compare(k, o, sc.steps, 'layerfs whiteout=oci');
    fail(t, `kernel vs layerfs whiteout=oci (${sc.name})${oci.diffs.length > 0 ? `\n  steps:\n${reproducer(sc.steps)}\n  differences` : ''}`, oci.diffs);
  });
}

// One fast-check property: the kernel and layerfs agree on a random sequence. On a divergence
// fast-check shrinks the sequence (each try mounts both again, a few seconds each) and the failure
// prints the shortest sequence it found, in the form REGRESSIONS takes.
const RANDOM_RUNS = Number(process.env['LAYERFS_WRITABLE_RUNS'] ?? '12');
const RANDOM_SEED = Number(process.env['LAYERFS_WRITABLE_SEED'] ?? '20261128');
const SHRINK_BUDGET_MS = Number(process.env['LAYERFS_WRITABLE_SHRINK_MS'] ?? String(15 * 60_000));

/** The property, on a mount with `options` (the layerfs side). */
function randomTest(name: string, runs: number, options: string[]): void {
  if (!selected(name)) return;
  test(name, async (t) => {
    if (!requireMountCapable(t)) return;
    const who = await subjectFor(t);
    if (who === undefined) return;
    const label = who === 'kernel' ? 'kernel#2' : ['layerfs', ...options].join(' ');
    let tries = 0;
    let last: { ops: Op[]; diffs: string[] } | undefined;
    const property = fc.asyncProperty(fc.array(opArbFor(options), { minLength: 1, maxLength: 30, size: 'max' }), async (ops) => {
      const steps = ops.map(stepOf);
      const tag = `random-${tries++}`;
      const k = await runSide('kernel', tag, steps);
      const s = await runSide(who, tag, steps, who === 'kernel' ? [] : options);
      const { diffs } = compare(k, s, steps, label);
      if (diffs.length > 0) last = { ops, diffs };
      return diffs.length === 0;
    });
    const started = Date.now();
    const out = await fc.check(property, {
      seed: RANDOM_SEED,
      numRuns: runs,
      examples: REGRESSIONS.map((ops) => [ops] as [Op[]]),
      // Each try costs two mounts: stop shrinking after the budget, keeping the shortest so far.
      interruptAfterTimeLimit: SHRINK_BUDGET_MS,
      markInterruptAsFailure: false,
    });
    t.log(`${tries} sequences replayed on both mounts in ${Math.round((Date.now() - started) / 1000)} s (seed ${RANDOM_SEED}, ${runs} runs)`);
    if (!out.failed) {
      t.pass();
      return;
    }
    const ops = (out.counterexample?.[0] ?? last?.ops ?? []) as Op[];
    const steps = ops.map(stepOf);
    // The diffs of the shortest sequence: replay it once more, on its own.
    const k = await runSide('kernel', 'random-min', steps);
    const s = await runSide(who, 'random-min', steps, who === 'kernel' ? [] : options);
    const { diffs } = compare(k, s, steps, label);
    t.fail(
      `kernel vs ${label} diverge (seed ${RANDOM_SEED}, path ${out.counterexamplePath ?? '?'}, ${out.numShrinks} shrinks); shortest sequence found:\n` +
        `${reproducer(steps)}\n  as a regression case: ${JSON.stringify(ops)}\n  differences:\n  ${diffs.join('\n  ')}` +
        (out.errorInstance ? `\n  error: ${String(out.errorInstance)}` : ''),
    );
  });
}

const EXTRA_OPTIONS = (process.env['LAYERFS_WRITABLE_OPTIONS'] ?? '').split(',').filter((o) => o !== '');
randomTest('random', RANDOM_RUNS, EXTRA_OPTIONS);
// The OCI writer (whiteout=oci) under the same draw; fewer runs by default (the scenarios run it too).
randomTest('random-oci', Number(process.env['LAYERFS_WRITABLE_RUNS_OCI'] ?? String(Math.ceil(RANDOM_RUNS / 2))), ['whiteout=oci', ...EXTRA_OPTIONS]);
