// src/resolve.ts (with src/branch-dir.ts and src/whiteout.ts): which branch serves a path, on real
// branch directories in both whiteout formats. Every case runs twice: with all branches as lowers
// (read once, answered from memory) and with the top-most branch as the upper (probed on disk):
// both paths through the code must give the same answers.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BranchSet } from '../../src/branch.js';
import { FsError } from '../../src/errno.js';
import { vpath, type RealPath } from '../../src/path.js';
import { DEFAULT_RESOLVER_OPTIONS, Resolver, type Resolution, type ResolverOptions } from '../../src/resolve.js';
import {
  chardev, dir, fifo, file, makeScratch, symlink, whiteout, xattrOpaque, xwhiteout, type Spec,
} from './fixture.js';

const s = await makeScratch('resolve');
test.after.always(s.cleanup);

type Mode = 'lowers' | 'upper';

function makeResolver(roots: string[], mode: Mode, opts?: ResolverOptions): Resolver {
  const [top, ...rest] = roots as RealPath[];
  const set = mode === 'upper' ? new BranchSet(rest, top) : new BranchSet(roots as RealPath[]);
  return opts === undefined ? new Resolver(set) : new Resolver(set, opts);
}

/** A resolution in short: "absent", "file@1", "dir@0,2" (branch indexes), or an error code. */
async function show(r: Resolver, p: string): Promise<string> {
  try {
    return shown(await r.resolve(vpath(p)), p);
  } catch (e) {
    return e instanceof FsError ? e.code : `BUG: ${String(e)}`;
  }
}

function shown(x: Resolution, p: string): string {
  if (x.kind === 'absent') return 'absent';
  if (x.kind === 'file') {
    // The stat must be that of the serving entry itself (never a followed link).
    const st = fs.lstatSync(x.real);
    if (st.ino !== x.stat.ino || x.real !== x.branch.real(vpath(p))) return `inconsistent file@${x.branch.index}`;
    return `file@${x.branch.index}`;
  }
  const top = x.stack[0]!;
  if (fs.lstatSync(top.real(vpath(p))).ino !== x.stat.ino) return 'inconsistent dir stat';
  return `dir@${x.stack.map((b) => b.index).join(',')}`;
}

interface Case {
  readonly name: string;
  readonly layers: Spec[];
  /** vpath -> expected show() result. */
  readonly expect: Record<string, string>;
}

const CASES: Case[] = [
  {
    name: 'a higher file overrides a lower one; lower-only entries show through',
    layers: [{ a: 'L0', 'd/x': 'L0' }, { a: 'L1', b: 'L1', 'd/x': 'L1', 'd/y': 'L1' }],
    expect: { '/': 'dir@0,1', '/a': 'file@0', '/b': 'file@1', '/d': 'dir@0,1', '/d/x': 'file@0', '/d/y': 'file@1', '/c': 'absent', '/d/z': 'absent' },
  },
  {
    name: 'kernel whiteouts (char 0:0) hide lower files and dirs, and only below themselves',
    layers: [{ a: whiteout, d: whiteout, 'm/n': 'L0' }, { a: 'L1', 'd/x': 'L1', m: whiteout, w: whiteout }, { 'm/n': 'L2', 'm/o': 'L2', w: 'L2' }],
    expect: { '/a': 'absent', '/d': 'absent', '/d/x': 'absent', '/m': 'dir@0', '/m/n': 'file@0', '/m/o': 'absent', '/w': 'absent' },
  },
  {
    name: 'OCI whiteouts (.wh.NAME) hide lower files and dirs',
    layers: [{ '.wh.a': '', '.wh.d': '' }, { a: 'L1', 'd/x': 'L1', '.wh.e': '' }, { e: 'L2', 'f/g': 'L2' }],
    expect: { '/a': 'absent', '/d': 'absent', '/d/x': 'absent', '/e': 'absent', '/f/g': 'file@2' },
  },
  {
    name: 'marker names themselves are never found',
    layers: [{ '.wh.a': '', 'd/.wh..wh..opq': '', 'd/k': 'L0', '.wh.': '', w: whiteout }, { a: 'L1', 'd/j': 'L1', w: 'L1' }],
    expect: { '/.wh.a': 'absent', '/d/.wh..wh..opq': 'absent', '/.wh.': 'absent', '/w': 'absent', '/d': 'dir@0', '/d/k': 'file@0', '/d/j': 'absent' },
  },
  {
    name: 'opaque dirs (trusted.overlay.opaque=y) hide lower children but not the dir itself',
    layers: [{ d: xattrOpaque('y'), 'd/x': 'L0' }, { 'd/x': 'L1', 'd/y': 'L1', 'd/sub/z': 'L1' }],
    expect: { '/d': 'dir@0', '/d/x': 'file@0', '/d/y': 'absent', '/d/sub': 'absent', '/d/sub/z': 'absent' },
  },
  {
    name: 'opaque dirs (.wh..wh..opq) hide lower children but not the dir itself',
    layers: [{ 'd/.wh..wh..opq': '', 'd/x': 'L0' }, { 'd/x': 'L1', 'd/y': 'L1', 'd/sub/z': 'L1' }],
    expect: { '/d': 'dir@0', '/d/x': 'file@0', '/d/y': 'absent', '/d/sub': 'absent', '/d/sub/z': 'absent' },
  },
  {
    name: 'an opaque dir in a middle branch joins the merge and cuts it below itself',
    layers: [{ 'd/a': 'L0' }, { d: xattrOpaque('y'), 'd/b': 'L1' }, { 'd/c': 'L2', 'e/.wh..wh..opq': '' }, { 'd/c': 'L3', 'e/f': 'L3' }],
    expect: { '/d': 'dir@0,1', '/d/a': 'file@0', '/d/b': 'file@1', '/d/c': 'absent', '/e': 'dir@2', '/e/f': 'absent' },
  },
  {
    name: 'opaque markers on branch roots are ignored (the root always merges every branch)',
    layers: [{ '.wh..wh..opq': '', a: 'L0' }, { '': xattrOpaque('y'), b: 'L1' }, { c: 'L2' }],
    expect: { '/': 'dir@0,1,2', '/a': 'file@0', '/b': 'file@1', '/c': 'file@2' },
  },
  {
    name: 'OCI .wh.X beside X in one branch: X is shown, lower X hidden',
    layers: [{ 'X/p': 'L0', '.wh.X': '', F: 'L0', '.wh.F': '' }, { 'X/q': 'L1', 'X/p': 'L1', F: 'L1' }],
    expect: { '/X': 'dir@0', '/X/p': 'file@0', '/X/q': 'absent', '/F': 'file@0' },
  },
  {
    name: 'a non-dir above a dir hides the dir and everything in it',
    layers: [{ a: 'L0', l: symlink('d') }, { 'a/x': 'L1', 'l/y': 'L1', d: dir() }],
    expect: { '/a': 'file@0', '/a/x': 'ENOTDIR', '/a/x/deeper': 'ENOTDIR', '/l': 'file@0', '/l/y': 'ENOTDIR', '/d': 'dir@1' },
  },
  {
    name: 'a dir above a non-dir above a dir: the merge is cut at the non-dir',
    layers: [{ 'a/x': 'L0' }, { a: 'L1' }, { 'a/y': 'L2', 'a/x': 'L2' }],
    expect: { '/a': 'dir@0', '/a/x': 'file@0', '/a/y': 'absent' },
  },
  {
    name: 'a dir above a symlink to a dir: the merge is cut at the symlink',
    layers: [{ 'a/x': 'L0' }, { a: symlink('/etc') }, { 'a/passwd': 'L2' }],
    expect: { '/a': 'dir@0', '/a/x': 'file@0', '/a/passwd': 'absent', '/a/hostname': 'absent' },
  },
  {
    name: 'a symlink to a host dir is a file: /a/passwd is ENOTDIR, never the host file',
    layers: [{ a: symlink('/etc'), b: symlink('../L1/b') }, { 'a/passwd': 'L1', 'a/other': 'L1', 'b/c': 'L1' }],
    expect: { '/a': 'file@0', '/a/passwd': 'ENOTDIR', '/a/other': 'ENOTDIR', '/a/hostname': 'ENOTDIR', '/b/c': 'ENOTDIR' },
  },
  {
    name: 'xattr whiteouts (empty file + trusted.overlay.whiteout) hide lower entries on lookup',
    layers: [
      { a: xwhiteout, d: xattrOpaque('x'), 'd/w': xwhiteout, 'd/v': 'L0', e: xwhiteout, n: file('not empty', { 'trusted.overlay.whiteout': 'y' }) },
      { a: 'L1', 'd/w': 'L1', 'd/u': 'L1', 'e/x': 'L1', n: 'L1' },
    ],
    // "x" marks a dir that holds xattr whiteouts; it is not opaque.
    expect: { '/a': 'absent', '/d': 'dir@0,1', '/d/w': 'absent', '/d/v': 'file@0', '/d/u': 'file@1', '/e': 'absent', '/e/x': 'absent', '/n': 'file@0' },
  },
  {
    name: 'files of every type resolve as files; a char device that is not 0:0 is no whiteout',
    layers: [{ null: chardev(1, 3), p: fifo, s: symlink('nowhere') }, { null: 'L1', p: 'L1', s: 'L1' }],
    expect: { '/null': 'file@0', '/p': 'file@0', '/s': 'file@0' },
  },
  {
    name: 'a whiteout with nothing below it, and a missing parent',
    layers: [{ a: whiteout, '.wh.b': '' }, { c: 'L1' }],
    expect: { '/a': 'absent', '/b': 'absent', '/a/x': 'absent', '/missing/x': 'absent', '/c/x': 'ENOTDIR' },
  },
  {
    name: 'deep merges follow each level separately',
    layers: [{ 'a/b/c/top': 'L0' }, { 'a/b': whiteout, 'a/k/l': 'L1' }, { 'a/b/c/low': 'L2', 'a/k/m': 'L2' }],
    expect: { '/a': 'dir@0,1,2', '/a/b': 'dir@0', '/a/b/c': 'dir@0', '/a/b/c/low': 'absent', '/a/k': 'dir@1,2', '/a/k/m': 'file@2' },
  },
];

for (const c of CASES) {
  for (const mode of ['lowers', 'upper'] as const) {
    test(`${c.name} [${mode}]`, async (t) => {
      const r = makeResolver(s.branches(...c.layers), mode);
      const got: Record<string, string> = {};
      for (const p of Object.keys(c.expect)) got[p] = await show(r, p);
      t.deepEqual(got, c.expect);
      // Asked again (now from the cache), the answers are the same.
      for (const p of Object.keys(c.expect)) got[p] = await show(r, p);
      t.deepEqual(got, c.expect);
    });
  }
}

// The kernel engine answers a LOOKUP in the same turn when resolveNow has the answer at hand:
// a path in a directory already resolved, whose lower listings (and merged index) are kept.
// Such an answer must be the one resolve() gives, errors included.
test('with its directory and listings kept, a path resolves at once, to what resolve() gives', async (t) => {
  for (const c of CASES) {
    for (const useIndex of [true, false]) {
      const r = makeResolver(s.branches(...c.layers), 'lowers', { ...DEFAULT_RESOLVER_OPTIONS, lowerIndex: useIndex });
      for (const p of Object.keys(c.expect)) await show(r, p);
      for (const [p, want] of Object.entries(c.expect)) {
        r.invalidate(vpath(p));
        let got: string;
        try {
          const x = r.resolveNow(vpath(p));
          got = x instanceof Promise ? `waited for ${await show(r, p)}` : shown(x, p);
        } catch (e) {
          got = e instanceof FsError ? e.code : `BUG: ${String(e)}`;
        }
        t.is(got, p === '/' ? `waited for ${want}` : want, `${c.name} (index ${useIndex}): ${p}`);
      }
    }
  }
});

test('tiny caches (constant eviction) give the same answers', async (t) => {
  for (const c of CASES) {
    const r = makeResolver(s.branches(...c.layers), 'lowers', { maxEntries: 1, maxDirs: 1 });
    const paths = Object.keys(c.expect);
    // Deepest first, so that parents are evicted and looked up again.
    for (const p of [...paths].reverse()) t.is(await show(r, p), c.expect[p] ?? "(none)", `${c.name}: ${p}`);
  }
});

test('a byte budget bounds what the caches hold, and answers stay the same', async (t) => {
  const files: Record<string, string> = {};
  for (let i = 0; i < 300; i++) files[`d${i % 10}/file-with-a-longish-name-${i}`] = 'x';
  const roots = s.branches(files, { 'd0/other': 'y' });
  const budget = 8 * 1024;
  const small = makeResolver(roots, 'lowers', { maxEntries: 100_000, maxDirs: 100_000, maxBytes: budget, maxDirBytes: budget });
  const big = makeResolver(roots, 'lowers');
  const paths = [...Object.keys(files), 'd0/other', 'd3/nothing'].map((p) => `/${p}`);
  for (const p of paths) t.is(await show(small, p), await show(big, p), p);
  const st = small.cacheStats();
  t.true(st.bytes <= budget && st.dirBytes <= budget && st.indexBytes <= budget, JSON.stringify(st));
  t.true(st.entries < paths.length, 'the budget evicted entries');
  t.is(big.cacheStats().entries, paths.length + 11, 'the default budget keeps them all (paths, 10 dirs, root)');
});

test('a directory whose listing outgrows the byte budget is read once for all the lookups in it (D45)', async (t) => {
  const files: Record<string, string> = {};
  for (let i = 0; i < 400; i++) files[`huge/name-${i}`] = 'x';
  const roots = s.branches(files, { 'huge/other': 'y' });
  const budget = 4 * 1024; // each of the two listings, and their merged index, is ~50 KiB
  for (const useIndex of [true, false]) {
    const r = makeResolver(roots, 'lowers', { maxEntries: 100_000, maxDirs: 100, maxDirBytes: budget, lowerIndex: useIndex });
    const plain = makeResolver(roots, 'lowers');
    for (const p of [...Array.from({ length: 58 }, (_, i) => `/huge/name-${i * 7}`), '/huge/other', '/huge/none']) {
      t.is(await show(r, p), await show(plain, p), p);
    }
    t.is(await show(r, '/huge/none'), 'absent');
    // Per branch: the root's listing and huge's; without the fix, one of huge's per lookup.
    t.true(r.cacheStats().dirMisses <= 6, `index ${useIndex}: ${JSON.stringify(r.cacheStats())}`);
  }
});

test('concurrent resolutions of one uncached path share one load', async (t) => {
  const roots = s.branches({ 'a/b/c': 'L0' }, { 'a/b/d': 'L1' });
  for (const mode of ['lowers', 'upper'] as const) {
    const r = makeResolver(roots, mode);
    const p = vpath('/a/b/c');
    const p1 = r.resolve(p);
    const p2 = r.resolve(p);
    const [x, y] = await Promise.all([p1, p2]);
    t.is(x.kind, 'file');
    t.is(x, y, 'both callers get the one resolution object');
    t.is(await r.resolve(p), x, 'then it is cached');
    const dirs = await Promise.all([r.resolve(vpath('/a/b')), r.resolve(vpath('/a/b'))]);
    t.is(dirs[0], dirs[1]);
    t.is(dirs[0].kind, 'dir');
  }
});

test('concurrent reads of one lower directory share one load; the upper is read fresh', async (t) => {
  const roots = s.branches({ d: dir() }, { 'd/x': 'L1' });
  const lowers = makeResolver(roots, 'lowers');
  const set = new BranchSet(roots.slice(1) as RealPath[], roots[0] as RealPath);
  const withUpper = new Resolver(set);
  const lower = set.all[1]!;
  const [a, b] = await Promise.all([lowers.branchDir(lower, vpath('/d')), lowers.branchDir(lower, vpath('/d'))]);
  t.is(a, b);
  t.deepEqual([...a.entries.keys()], ['x']);
  const upper = set.upper!;
  const before = await withUpper.branchDir(upper, vpath('/d'));
  t.deepEqual([...before.entries.keys()], []);
  fs.writeFileSync(path.join(roots[0]!, 'd', 'new'), 'U');
  const after = await withUpper.branchDir(upper, vpath('/d'));
  t.deepEqual([...after.entries.keys()], ['new']);
});

test('get() turns an absent path into ENOENT naming the syscall; invalidate() forgets a path', async (t) => {
  const roots = s.branches({ keep: 'U' }, { low: 'L1' });
  const r = makeResolver(roots, 'upper');
  const p = vpath('/later');
  const e = await t.throwsAsync(r.get(p, 'getattr'), { instanceOf: FsError });
  t.is(e?.code, 'ENOENT');
  t.is(e?.syscall, 'getattr');
  t.is(e?.path, '/later');
  fs.writeFileSync(path.join(roots[0]!, 'later'), 'U');
  r.invalidate(p);
  const got = await r.get(p, 'getattr');
  t.is(got.kind, 'file');
  t.is(got.kind === 'file' ? got.branch.index : -1, 0);
});

test('a resolution failure is not cached and not shared with later callers', async (t) => {
  const roots = s.branches({ f: 'L0' });
  const r = makeResolver(roots, 'lowers');
  await t.throwsAsync(r.resolve(vpath('/f/x')), { instanceOf: FsError, message: /ENOTDIR/ });
  await t.throwsAsync(r.resolve(vpath('/f/x')), { instanceOf: FsError, message: /ENOTDIR/ });
});

// Names of up to NAME_MAX bytes are valid in any branch. Probing the upper for the name's OCI
// whiteout (".wh." + name) makes a name longer than NAME_MAX, and lstat of it fails with
// ENAMETOOLONG, which is not treated as "no whiteout".
// Regression: probeOnDisk once asked for ".wh." + name, ENAMETOOLONG for a name of 252..255 bytes.
test('an upper file whose name is 252..255 bytes long resolves', async (t) => {
  const long = 'n'.repeat(255);
  const roots = s.branches({ [long]: 'U', ['m'.repeat(252)]: 'U' }, { low: 'L1' });
  const r = makeResolver(roots, 'upper');
  t.is(await show(r, `/${'m'.repeat(252)}`), 'file@0');
  t.is(await show(r, `/${long}`), 'file@0');
});

test('the same long names resolve in a lower branch', async (t) => {
  const long = 'n'.repeat(255);
  const r = makeResolver(s.branches({ [long]: 'L0', ['m'.repeat(252)]: 'L0' }, { low: 'L1' }), 'lowers');
  t.is(await show(r, `/${'m'.repeat(252)}`), 'file@0');
  t.is(await show(r, `/${long}`), 'file@0');
});

// Regression: probeOnDisk looked marker names up directly, so marker files of the upper
// (".wh.X", ".wh..wh..opq", ".wh.") are found as plain files, while the same markers in a lower
// are never found and readdir never lists them (see the "marker names" case above, [lowers]).
test('marker files in the upper are not found by lookup', async (t) => {
  const roots = s.branches({ '.wh.a': '', 'd/.wh..wh..opq': '', '.wh.': '' }, { a: 'L1' });
  const r = makeResolver(roots, 'upper');
  t.is(await show(r, '/.wh.a'), 'absent');
  t.is(await show(r, '/d/.wh..wh..opq'), 'absent');
  t.is(await show(r, '/.wh.'), 'absent');
});

// The merged lower index (src/lower-index.ts) answers exactly what a branch-by-branch lookup
// answers, on random layer sets in both whiteout formats, as lowers and with an upper on top.
test('the merged lower index answers as the branch-by-branch lookup (random layer sets)', async (t) => {
  const fc = (await import('fast-check')).default;
  const PATHS = ['a', 'b', 'd', 'd/a', 'd/b', 'd/e', 'd/e/x', 'e', 'e/y'];
  const node = fc.constantFrom<Spec[string] | 'oci-whiteout' | 'oci-opaque'>(
    file('f'), dir(), whiteout, xwhiteout, xattrOpaque(), 'oci-whiteout', 'oci-opaque', symlink('a'), file(''),
  );
  const layer = fc.dictionary(fc.constantFrom(...PATHS), node, { maxKeys: 6 }).map((raw) => {
    const spec: Spec = {};
    for (const [p, n] of Object.entries(raw)) {
      const parent = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : undefined;
      // A child needs every ancestor to be a directory in the same layer (or absent: made as one).
      const ancestors = p.split('/').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('/'));
      const blocked = ancestors.some((a) => {
        const an = raw[a];
        return an !== undefined && an !== 'oci-opaque' && !(typeof an === 'object' && an.type === 'dir');
      });
      if (blocked) continue;
      const at = (name: string) => (parent === undefined ? name : `${parent}/${name}`);
      const base = p.slice(p.lastIndexOf('/') + 1);
      if (n === 'oci-whiteout') spec[at(`.wh.${base}`)] = file('');
      else if (n === 'oci-opaque') {
        spec[p] = dir();
        spec[`${p}/.wh..wh..opq`] = file('');
      } else spec[p] = n;
    }
    return spec;
  });
  let cases = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(layer, { minLength: 2, maxLength: 5 }), async (layers) => {
      const roots = s.branches(...layers);
      for (const mode of ['lowers', 'upper'] as const) {
        const indexed = makeResolver(roots, mode);
        const each = makeResolver(roots, mode, { maxEntries: 1000, maxDirs: 1000, lowerIndex: false });
        for (const p of ['/', ...PATHS.map((x) => `/${x}`), '/d/none', '/e/y/z']) {
          const [a, b] = [await show(indexed, p), await show(each, p)];
          if (a !== b) throw new Error(`${mode} ${p}: indexed ${a}, branch by branch ${b}\nlayers: ${JSON.stringify(layers)}`);
        }
      }
      cases++;
    }),
    { numRuns: 150, seed: 42 },
  );
  t.is(cases, 150);
});
