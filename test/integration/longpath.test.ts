// Paths longer than PATH_MAX through a real mount, against the kernel's overlayfs: the branches lie
// at a long-ish base (a few hundred bytes), and a shell (not this process) cd's step by step into
// trees whose paths, with the branch's own location, are far over 4096 bytes: it creates, writes,
// reads, stats, renames, links, unlinks and lists there, and reads, changes and deletes in a lower
// tree that is already that deep. Both mounts must print the same, show the same merged tree, and
// leave the same upper dir. Trees are compared with a walker that holds a directory fd per level
// (no path it hands to a syscall is long), since find, getfattr and fs.readdir stop at PATH_MAX.
import test from 'ava';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { getXattr, listXattr } from '../../src/host/libc.js';
import type { RealPath } from '../../src/path.js';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { withKernelOverlay, withLayerfs } from '../helpers/mounts.js';
import { run } from '../helpers/tree.js';

const space = scratch(test);

const O_PATH = 0o10000000;
const DIR = O_PATH | fs.constants.O_DIRECTORY;
/** Bookkeeping in an upper (origin, impure, layerfs's own): left out as the differential suite does. */
const bookkeeping = (name: string): boolean => name.startsWith('trusted.overlay.') && name !== 'trusted.overlay.opaque';
const LEVELS = 45; // 45 x 101 bytes: deeper than PATH_MAX from the mount root alone

/** What one tree shows: relative path -> description; names listed but not there (kernel whiteouts in single-branch dirs). */
interface Walk {
  entries: Map<string, string>;
  phantoms: string[];
}

/** Walk a tree of any depth, one directory fd per level. */
function walk(root: string): Walk {
  const entries = new Map<string, string>();
  const phantoms: string[] = [];
  const visit = (fd: number, rel: string): void => {
    for (const name of fs.readdirSync(`/proc/self/fd/${fd}`).sort()) {
      const p = `/proc/self/fd/${fd}/${name}`;
      const r = rel === '' ? name : `${rel}/${name}`;
      let st: fs.Stats;
      try {
        st = fs.lstatSync(p);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        phantoms.push(r);
        continue;
      }
      const xattrs = listXattr(p as RealPath)
        .filter((n) => !bookkeeping(n))
        .sort()
        .map((n) => `${n}=${getXattr(p as RealPath, n)?.toString('hex') ?? ''}`);
      let what = `${(st.mode & fs.constants.S_IFMT).toString(8)} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
      if (st.isFile()) what += ` size=${st.size} nlink=${st.nlink} sha=${createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 16)}`;
      else if (st.isSymbolicLink()) what += ` -> ${fs.readlinkSync(p)}`;
      else if (st.isCharacterDevice() || st.isBlockDevice()) what += ` rdev=${st.rdev}`;
      else if (!st.isDirectory()) what += ` nlink=${st.nlink}`;
      if (xattrs.length > 0) what += ` {${xattrs.join(' ')}}`;
      entries.set(r, what);
      if (st.isDirectory()) {
        const sub = fs.openSync(p, DIR);
        try {
          visit(sub, r);
        } finally {
          fs.closeSync(sub);
        }
      }
    }
  };
  const fd = fs.openSync(root, DIR);
  try {
    visit(fd, '');
  } finally {
    fs.closeSync(fd);
  }
  return { entries, phantoms };
}

function diff(a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of a) if (b.get(k) !== v) out.push(`${k.length > 80 ? `...${k.slice(-80)}` : k}: kernel ${v} | layerfs ${b.get(k) ?? '(none)'}`);
  for (const [k, v] of b) if (!a.has(k)) out.push(`${k.length > 80 ? `...${k.slice(-80)}` : k}: kernel (none) | layerfs ${v}`);
  return out;
}

async function sh(script: string, env: Record<string, string> = {}): Promise<string> {
  const r = await run('sh', ['-c', script], { env: { ...process.env, LC_ALL: 'C', ...env }, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`sh exited ${r.code}: ${r.stderr}\n${r.stdout.toString()}`);
  return r.stdout.toString('utf8');
}

const DEEP_LOWER = `
  L=$(printf 'l%.0s' $(seq 100))
  cd -P "$B/lower" || exit 2
  echo top > topfile
  i=0; while [ $i -lt ${LEVELS} ]; do
    mkdir "$L" && cd -P "$L" || exit 3
    [ $i -eq 20 ] && echo middle > middle
    i=$((i+1))
  done
  printf 'deep lower data\\n' > deepfile
  echo v > victim
  mkdir keepdir
  echo k > keepdir/k
  chmod 751 keepdir
`;

/** What a user does through the mount; every result is printed (no mount-specific text). */
const USER_SCRIPT = `
  D=$(printf 'd%.0s' $(seq 100))
  L=$(printf 'l%.0s' $(seq 100))
  r() { out=$("$@" 2>&1); echo "$1 -> $? $out"; }
  cd -P "$M" || exit 2
  i=0; while [ $i -lt ${LEVELS} ]; do mkdir "$D" && cd -P "$D" || exit 3; i=$((i+1)); done
  echo "created $(( $(/bin/pwd | wc -c) - \${#M} - 1 )) bytes of path below the mount point"
  echo data > file; echo "write $?"
  r cat file
  r stat -c '%s %a %h %F' file
  r mv file file2
  r ls
  r ln file2 hard
  r ln -s file2 sym
  r readlink sym
  r cat sym
  r stat -c '%h' file2
  r chmod 640 file2
  r touch -d @1000000000 file2
  r stat -c '%a %Y' file2
  r setfattr -n user.k -v v file2
  r getfattr --only-values -n user.k file2
  r truncate -s 2 file2
  r cat file2
  r mkfifo fifo
  r stat -c %F fifo
  r mkdir sub
  r rmdir sub
  r cp file2 copy
  r cat copy
  r rm hard sym
  r mv nothere x
  r rmdir ../"$D"
  r ls
  cd -P .. && r mv "$D" renamed-dir && r ls renamed-dir && r ls

  # A lower tree that is already deeper than PATH_MAX: read, copied up, deleted in.
  cd -P "$M" || exit 4
  r cat topfile
  i=0; while [ $i -lt ${LEVELS} ]; do cd -P "$L" || exit 5; [ $i -eq 20 ] && r cat middle; i=$((i+1)); done
  r ls
  r cat deepfile
  r stat -c '%s %a %F' deepfile keepdir
  echo more >> deepfile; echo "append $?"
  r cat deepfile
  r rm victim
  r ls
  r mv deepfile renamed
  r cat renamed
  r chmod 700 keepdir
  r ls keepdir
  r mkdir newdir
  r ls

  # rm -rf of a deep tree made through the mount, from its top.
  cd -P "$M" || exit 6
  mkdir gone && cd -P gone || exit 7
  i=0; while [ $i -lt ${LEVELS} ]; do mkdir "$D" && cd -P "$D" || exit 8; echo x > f; i=$((i+1)); done
  cd -P "$M" && r rm -rf gone && r ls
  r find . -type f -name renamed -newer topfile
`;

async function layerSet(name: string) {
  const top = await space.dir(name);
  // The branches' own location makes every host path longer still.
  const base = path.join(top, `base-${'b'.repeat(200)}`);
  for (const n of ['lower', 'lower2', 'upper', 'work']) fs.mkdirSync(path.join(base, n), { recursive: true });
  fs.writeFileSync(path.join(base, 'lower2', 'from-bottom'), 'bottom\n');
  await sh(DEEP_LOWER, { B: base });
  const d = (n: string) => path.join(base, n);
  return { lowers: [d('lower'), d('lower2')], upper: d('upper'), work: d('work'), d };
}

test('deeper than PATH_MAX through a writable mount: the same as the kernel overlay, and the same upper', async (t) => {
  if (!requireMountCapable(t)) return;
  const k = await layerSet('kernel');
  const l = await layerSet('layerfs');
  const lowerBefore = walk(l.d('lower')).entries;

  const kernel = await withKernelOverlay(k, async (mnt) => ({ out: await sh(USER_SCRIPT, { M: mnt }), merged: walk(mnt) }));
  const layerfs = await withLayerfs(l, async (mnt) => ({ out: await sh(USER_SCRIPT, { M: mnt }), merged: walk(mnt) }));

  t.log(`${kernel.out.split('\n').length} result lines; merged trees of ${kernel.merged.entries.size} entries`);
  t.regex(kernel.out, /created \d{4,} bytes/);
  t.true(Number(/created (\d+) bytes/.exec(layerfs.out)?.[1]) > 4096, 'the shell really went past PATH_MAX');
  t.true(kernel.out.includes('cat -> 0 deep lower data'), 'the deep lower file reads through the kernel overlay');
  t.true(layerfs.out.includes('cat -> 0 deep lower data'), 'the deep lower file reads through layerfs');
  t.deepEqual(layerfs.out.split('\n'), kernel.out.split('\n'), 'the shell saw the same results');
  t.deepEqual(diff(kernel.merged.entries, layerfs.merged.entries), [], 'the same merged tree');
  t.deepEqual(layerfs.merged.phantoms, [], 'layerfs never lists whiteouts');
  if (kernel.merged.phantoms.length > 0) t.log(`kernel lists ${kernel.merged.phantoms.length} whiteout(s) it cannot stat (known divergence)`);

  const ku = walk(k.upper);
  const lu = walk(l.upper);
  t.true([...lu.entries.keys()].some((p) => Buffer.byteLength(`${l.upper}/${p}`) > 4096 + 500), 'the upper holds paths well over PATH_MAX');
  t.deepEqual(diff(ku.entries, lu.entries), [], 'the same upper dir');
  t.deepEqual(walk(l.d('lower')).entries, lowerBefore, 'the lower is untouched');
});

test('a lower tree deeper than PATH_MAX through read-only mounts: the same merged view', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layerSet('readonly');
  const kernel = await withKernelOverlay({ lowers: l.lowers }, async (mnt) => walk(mnt));
  const layerfs = await withLayerfs({ lowers: l.lowers }, async (mnt) => ({
    tree: walk(mnt),
    read: await sh(`cd -P "$M" && for i in $(seq ${LEVELS}); do cd -P $(printf 'l%.0s' $(seq 100)) || exit 9; done && cat deepfile && ls -A`, { M: mnt }),
  }));
  t.is(layerfs.read, 'deep lower data\ndeepfile\nkeepdir\nvictim\n');
  t.true(kernel.entries.size > LEVELS);
  t.deepEqual(diff(kernel.entries, layerfs.tree.entries), []);
});
