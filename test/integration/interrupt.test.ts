// A process killed while it waits for a copy-up (D48): as on the kernel's overlayfs, the copy
// stops and the process goes at once, leaving the lower file as it was and nothing in the upper
// or the work dir; a signal the process handles does not cut the copy short, nor does the death of
// one of two processes waiting for the same copy. The same for a rename that copies a large
// lower file up, or a merged directory's tree (D16), and for a link that copies a lower file up.
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { requestStats } from '../../src/mount-process.js';
import { withLayerfs } from '../helpers/mounts.js';

const space = scratch(test);

// Large enough that its copy takes a second or more here (tmpfs to tmpfs: 0.7-1.2 s for 512 MiB),
// so that a kill lands in the middle of it.
const SIZE = 512 << 20;

interface Setup {
  readonly d: (n: string) => string;
  readonly dirs: { lowers: string[]; upper: string; work: string };
}

async function setup(name: string, files: readonly string[]): Promise<Setup> {
  const root = await space.dir(name);
  const d = (n: string): string => path.join(root, n);
  for (const n of ['lower', 'upper', 'work']) fs.mkdirSync(d(n));
  const chunk = Buffer.alloc(64 << 20, 'o');
  for (const f of files) {
    fs.mkdirSync(path.dirname(d(`lower/${f}`)), { recursive: true });
    const fd = fs.openSync(d(`lower/${f}`), 'w');
    for (let at = 0; at < SIZE; at += chunk.length) fs.writeSync(fd, chunk, 0, chunk.length, at);
    fs.closeSync(fd);
  }
  return { d, dirs: { lowers: [d('lower')], upper: d('upper'), work: d('work') } };
}

/** Layerfs's temporary copies in the work dir (a copy-up under way). */
const copying = (s: Setup): string[] => (fs.existsSync(s.d('work/work')) ? fs.readdirSync(s.d('work/work')) : []);

async function until(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

interface Running {
  readonly child: ChildProcess;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

function running(child: ChildProcess): Running {
  return { child, exit: new Promise((r) => child.on('exit', (code, signal) => r({ code, signal, at: Date.now() }))) };
}

const run = (script: string): Running => running(spawn('sh', ['-c', script], { stdio: 'ignore' }));

/** A process that appends `text` to `file` and exits 3 if the open fails (EINTR included), 0 when written. */
const spawnWriter = (file: string, text: string): Running =>
  running(spawn('perl', ['-e', 'open(my $f, ">>", $ARGV[0]) or exit 3; print $f $ARGV[1]; close($f) or exit 4; exit 0', file, text], { stdio: 'ignore' }));

/** How many OPENs of `/name` layerfs is answering now (the requests in flight of `layerfs stats`). */
async function opensInFlight(mnt: string, name: string): Promise<number> {
  const s = await requestStats(mnt);
  return s.inFlight.oldest.filter((x) => x.op === 'open' && x.path === `/${name}`).length;
}

/** Whether process `pid` waits in the kernel for the answer to a FUSE OPEN (its kernel stack). */
function waitsInOpen(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/stack`, 'utf8').includes('fuse_file_open');
  } catch {
    return false;
  }
}

function tailOf(file: string, n: number): string {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(n);
    fs.readSync(fd, b, 0, n, fs.fstatSync(fd).size - n);
    return b.toString();
  } finally {
    fs.closeSync(fd);
  }
}

/** The file was copied up whole and `text` appended to it: in the upper, and shown so. */
function assertAppended(t: ExecutionContext, s: Setup, mnt: string, f: string, text: string): void {
  t.is(fs.statSync(s.d(`upper/${f}`)).size, SIZE + text.length);
  t.is(tailOf(path.join(mnt, f), text.length + 1), `o${text}`);
}

function assertLowerOnly(t: ExecutionContext, s: Setup, mnt: string, f: string): void {
  t.false(fs.existsSync(s.d(`upper/${f}`)), 'no copy in the upper');
  t.deepEqual(copying(s), [], 'nothing left in the work dir');
  t.is(fs.statSync(path.join(mnt, f)).size, SIZE, 'the file reads as the lower one');
  t.is(fs.statSync(s.d(`lower/${f}`)).size, SIZE, 'the lower is untouched');
}

/** Kill `p` once the copy it waits for has started: it must go at once, and the copy be undone. */
async function killDuringCopy(t: ExecutionContext, s: Setup, what: string, p: Running): Promise<void> {
  await until('the copy to start', () => copying(s).length > 0);
  const killedAt = Date.now();
  p.child.kill('SIGKILL');
  const e = await p.exit;
  t.is(e.signal, 'SIGKILL');
  t.log(`${what} was gone ${e.at - killedAt} ms after the kill`);
  await until('the copy to be undone', () => copying(s).length === 0, 5_000);
}

test('SIGKILL of a process waiting for a copy-up stops the copy: the process goes at once, nothing is left', async (t) => {
  if (!requireMountCapable(t)) return;
  const s = await setup('killed', ['big']);
  await withLayerfs(s.dirs, async (mnt) => {
    await killDuringCopy(t, s, 'the appending process', run(`echo appended >> '${path.join(mnt, 'big')}'`));
    assertLowerOnly(t, s, mnt, 'big');
    // The next writer copies it up whole.
    const again = run(`echo again >> '${path.join(mnt, 'big')}'`);
    t.is((await again.exit).code, 0);
    assertAppended(t, s, mnt, 'big', 'again\n');
  });
});

test('a signal the process handles does not cut its copy-up short', async (t) => {
  if (!requireMountCapable(t)) return;
  const s = await setup('handled', ['big']);
  await withLayerfs(s.dirs, async (mnt) => {
    // The shell handles SIGUSR1: the kernel tells layerfs the open was interrupted, and the copy
    // goes on (the kernel's overlayfs stops one for a fatal signal only).
    const w = run(`trap 'echo usr1 >&2' USR1; echo appended >> '${path.join(mnt, 'big')}'; exit $?`);
    await until('the copy-up to start', () => copying(s).length > 0);
    w.child.kill('SIGUSR1');
    const e = await w.exit;
    t.is(e.code, 0, 'the append succeeded');
    assertAppended(t, s, mnt, 'big', 'appended\n');
  });
});

test('when one of two processes waiting for the same copy-up is killed, the copy goes on for the other', async (t) => {
  if (!requireMountCapable(t)) return;
  const s = await setup('two', ['big']);
  await withLayerfs(s.dirs, async (mnt) => {
    const file = path.join(mnt, 'big');
    const first = run(`echo first >> '${file}'`);
    await until('the copy-up to start', () => copying(s).length > 0);
    // Perl's open does not retry on EINTR (dd and the shells do): a copy stopped under it would show.
    const second = spawnWriter(file, 'second\n');
    await until('both opens to wait for it', () => waitsInOpen(first.child.pid!) && waitsInOpen(second.child.pid!));
    // The kernel shows an open waiting once it has queued the OPEN, before layerfs has read it;
    // and it hands layerfs the INTERRUPT of a kill ahead of requests still queued. Killed then,
    // the first would be the copy-up's only caller so far, and the copy would stop (D48).
    let seen = 0;
    for (const end = Date.now() + 20_000; (seen = await opensInFlight(mnt, 'big')) < 2;) {
      if (Date.now() > end || copying(s).length === 0) throw new Error(`layerfs had ${seen} of the two opens while the copy-up ran`);
    }
    first.child.kill('SIGKILL');
    t.is((await first.exit).signal, 'SIGKILL');
    t.is((await second.exit).code, 0, 'the other append succeeded, its open not failed by the kill of the first');
    assertAppended(t, s, mnt, 'big', 'second\n');
    t.deepEqual(copying(s), []);
  });
});

for (const [what, entry, files] of [
  ['a lower file', 'big', ['big']],
  ['a merged directory', 'd', ['d/big', 'd/small']],
] as const) {
  test(`SIGKILL of mv renaming ${what} that must be copied up stops the copy; nothing is moved`, async (t) => {
    if (!requireMountCapable(t)) return;
    const s = await setup(`mv-${entry}`, files);
    await withLayerfs(s.dirs, async (mnt) => {
      await killDuringCopy(t, s, 'mv', running(spawn('mv', [path.join(mnt, entry), path.join(mnt, 'moved')], { stdio: 'ignore' })));
      t.false(fs.existsSync(path.join(mnt, 'moved')), 'nothing at the new name');
      t.deepEqual(fs.readdirSync(s.d('upper')).filter((n) => !n.startsWith('.')), [], 'nothing copied up');
      t.is(fs.statSync(path.join(mnt, files[0])).size, SIZE, 'the entry is where it was');
      // Not killed, the same move is made whole.
      const again = running(spawn('mv', [path.join(mnt, entry), path.join(mnt, 'moved')], { stdio: 'ignore' }));
      t.is((await again.exit).code, 0);
      t.is(fs.statSync(path.join(mnt, 'moved', ...files[0].split('/').slice(1))).size, SIZE);
      t.false(fs.existsSync(path.join(mnt, entry)));
    });
  });
}

test('SIGKILL of ln linking a lower file that must be copied up stops the copy; no link is made', async (t) => {
  if (!requireMountCapable(t)) return;
  const s = await setup('ln-big', ['big']);
  await withLayerfs(s.dirs, async (mnt) => {
    await killDuringCopy(t, s, 'ln', running(spawn('ln', [path.join(mnt, 'big'), path.join(mnt, 'linked')], { stdio: 'ignore' })));
    t.false(fs.existsSync(path.join(mnt, 'linked')), 'no link');
    assertLowerOnly(t, s, mnt, 'big');
    // Not killed, the same link is made, to the copy.
    const again = running(spawn('ln', [path.join(mnt, 'big'), path.join(mnt, 'linked')], { stdio: 'ignore' }));
    t.is((await again.exit).code, 0);
    t.is(fs.statSync(path.join(mnt, 'linked')).nlink, 2);
    t.is(fs.statSync(s.d('upper/big')).size, SIZE);
  });
});

