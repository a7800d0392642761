// Read-only layer sets for the differential suite. Each LayerSpec list is TOP FIRST.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Entry, LayerSpec } from '../helpers/layers.js';

export interface Case {
  name: string;
  layers: () => LayerSpec[];
  /** Extra files next to the layers (e.g. a "secret" directory that symlinks point at). */
  setup?: (layersRoot: string) => void;
  /** Virtual paths that must not exist (lstat ENOENT, same errno on both sides). */
  absent?: string[];
  /** Virtual paths that must not exist even when their symlinks are followed (stat). */
  absentFollow?: string[];
  /** Reads at explicit offsets: [vpath, offset, length]. */
  reads?: [string, number, number][];
  /** Snapshot options. */
  xattrs?: boolean;
  content?: boolean;
  /** The kernel lists "phantom" names here (whiteouts in directories that exist in one layer only). */
  kernelPhantoms?: boolean;
  /** Put every layer (and its kernel-format copy) on its own tmpfs: inode numbers collide across layers. */
  separateFs?: boolean;
  /** Name the layers through symlinks (relative and absolute) in lowerdir=. */
  viaSymlinks?: boolean;
  /** Also compare the errno of reads that must fail (readErrors in checks.ts). */
  errorChecks?: boolean;
  /** Documentation printed with failures. */
  note?: string;
}

const T = (y: number, mo = 1, d = 1, h = 0, mi = 0, s = 0, ms = 0) => Date.UTC(y, mo - 1, d, h, mi, s, ms);

const f = (p: string, content: string | Buffer = `content of ${p}\n`, extra: Partial<Extract<Entry, { type: 'file' }>> = {}): Entry => ({
  type: 'file', path: p, content, ...extra,
});
const d = (p: string, extra: Partial<Extract<Entry, { type: 'dir' }>> = {}): Entry => ({ type: 'dir', path: p, ...extra });
const wh = (p: string): Entry => ({ type: 'whiteout', path: p });
const ln = (p: string, target: string, extra: Partial<Extract<Entry, { type: 'symlink' }>> = {}): Entry => ({
  type: 'symlink', path: p, target, ...extra,
});

export const GiB = 1024 * 1024 * 1024;
export const SPARSE_MARKER = 'LAYERFS-SPARSE-MARKER at 4.5 GiB\n';
export const SPARSE_MARKER_OFFSET = 4.5 * GiB;

const LONG = 'x'.repeat(50);
const deepPath = (depth: number) => Array.from({ length: depth }, (_, i) => `d${String(i + 1).padStart(2, '0')}-${LONG}`).join('/');

export const ODD_NAMES = [
  'héllo wörld', '日本', 'a b', 'a:b', 'a,b', 'x=y', '-dash', '.hidden', '...', 'tab\there', 'emoji 😀',
  'q"uote', "s'quote", 'back\\slash', 'n'.repeat(255), '.whatever', '.wh', 'wh.x', '%41', '*star?', 'del\x7f',
  'caf\u00e9', 'cafe\u0301', ' leading space', 'trailing space ', '#hash', '$dollar', 'semi;colon', '[br]',
];

export const CASES: Case[] = [
  {
    name: 'overrides',
    errorChecks: true,
    layers: () => [
      {
        entries: [
          f('a.txt', 'top\n', { mode: 0o640, uid: 1000, gid: 1000, mtime: T(2022, 5, 6, 7, 8, 9, 123) }),
          f('dir1/b.txt', 'top-b\n'),
          f('dir1/dir2/dir3/dir4/dir5/e.txt', 'new at depth 5\n'),
          f('shrink', ''),
          d('dirattr', { mode: 0o711, uid: 33, gid: 33, mtime: T(2023, 1, 2) }),
          f('dirattr/top-only', 'x'),
        ],
      },
      {
        entries: [
          f('a.txt', 'middle\n'),
          f('dir1/dir2/dir3/c.txt', 'middle-c\n', { mode: 0o600 }),
          f('only-middle', 'm'),
          d('dir1/dir2', { mode: 0o750, uid: 7, gid: 8, mtime: T(2019, 3, 3) }),
          f('grow', 'a much longer content in the middle layer\n'.repeat(100)),
        ],
      },
      {
        entries: [
          f('a.txt', 'bottom\n'),
          f('dir1/b.txt', 'bottom-b\n'),
          f('dir1/dir2/dir3/c.txt', 'bottom-c\n'),
          f('dir1/dir2/keep', 'k'),
          f('only-bottom', 'b'),
          f('dir1/only-bottom2', 'b2'),
          d('dirattr', { mode: 0o700, uid: 1000, gid: 1000, mtime: T(2001, 1, 1) }),
          f('dirattr/x', 'x'),
          f('shrink', 'this file is longer in the bottom layer\n'.repeat(50)),
          f('grow', 'short'),
        ],
      },
    ],
  },
  {
    name: 'whiteouts',
    layers: () => [
      {
        entries: [
          wh('f1'), // a file at the root
          wh('d1'), // a directory (with a subtree) at the root
          f('reborn', 'new\n'),
          f('rebornd/new', 'new child\n'),
          wh('deep/a/b/c/g'), // depth 4 in the top layer
          wh('ghost'), // already whited out below
          wh('f2'), // present only two layers down
          wh('nothing-top'), // nothing below at all (root: merged)
          f('deep/a/b/c/added', 'x'),
        ],
      },
      {
        entries: [
          wh('deep/a/b/c/f'), // depth 4 in the middle layer
          wh('reborn'),
          wh('rebornd'),
          wh('ghost'),
          f('middle-file', 'm'),
        ],
      },
      {
        entries: [
          f('f1'), f('f2'), f('keep'),
          f('d1/x'), f('d1/y/z'),
          f('deep/a/b/c/f'), f('deep/a/b/c/g'), f('deep/a/b/c/h'),
          f('reborn', 'old\n'), f('rebornd/old', 'old child\n'), f('rebornd/sub/old2'),
          wh('lowest-root-whiteout'), // whiteout in the lowest layer, in a merged dir (the root)
          f('ghost'),
        ],
      },
    ],
    absent: ['/f1', '/d1', '/d1/x', '/deep/a/b/c/f', '/deep/a/b/c/g', '/ghost', '/f2', '/rebornd/old', '/rebornd/sub', '/lowest-root-whiteout', '/nothing-top'],
  },
  {
    name: 'whiteouts-in-single-layer-dirs',
    note:
      'The kernel passes readdir of a directory that exists in one layer only straight to that layer, so a ' +
      'whiteout there is LISTED (a "phantom": lstat gives ENOENT). layerfs is expected to hide it; the suite drops ' +
      'kernel phantoms before comparing and requires layerfs to show none.',
    kernelPhantoms: true,
    layers: () => [
      { entries: [f('topdir/keep'), wh('topdir/nothing-below'), f('shared/t')] },
      { entries: [f('lowdir/keep'), wh('lowdir/nothing'), wh('lowdir/sub/deeper'), f('shared/l'), wh('shared/nothing')] },
    ],
    absent: ['/topdir/nothing-below', '/lowdir/nothing', '/lowdir/sub/deeper', '/shared/nothing'],
  },
  {
    name: 'opaque',
    layers: () => [
      {
        entries: [
          d('top-op', { opaque: true, mode: 0o750 }), f('top-op/t'),
          f('mid-op/top-file'),
          f('low-op/t'),
          d('emptyop', { opaque: true }),
          d('op-over-file', { opaque: true }), f('op-over-file/inside'),
          d('a/b/c/deep-op', { opaque: true }), f('a/b/c/deep-op/new'),
          // Only the value "y" makes a directory opaque; other values are hidden but ignored.
          d('not-opaque-n', { xattrs: { 'trusted.overlay.opaque': 'n' } }), f('not-opaque-n/top'),
          d('not-opaque-empty', { xattrs: { 'trusted.overlay.opaque': '' } }), f('not-opaque-empty/top'),
        ],
      },
      {
        entries: [
          d('mid-op', { opaque: true }), f('mid-op/m'),
          f('top-op/mid-file'),
          d('nested'), d('nested/inner', { opaque: true }), f('nested/inner/z'),
          f('a/b/c/deep-op/mid'),
        ],
      },
      {
        entries: [
          f('top-op/a'), f('top-op/b'), f('top-op/sub/c'),
          f('mid-op/a'), f('mid-op/b'),
          d('low-op', { opaque: true }), f('low-op/a'), // opaque in the lowest layer: no effect
          d('low-only-op', { opaque: true }), f('low-only-op/x'), // opaque dir present in one layer only
          f('nested/inner/x'), f('nested/inner/y'), f('nested/outer'),
          f('emptyop/stuff'),
          f('op-over-file', 'was a file'),
          f('a/b/c/deep-op/low'), f('a/b/c/sibling'),
          f('not-opaque-n/low'), f('not-opaque-empty/low'),
        ],
      },
    ],
    absent: ['/top-op/a', '/top-op/sub', '/top-op/mid-file', '/mid-op/a', '/nested/inner/x', '/emptyop/stuff', '/a/b/c/deep-op/mid', '/a/b/c/deep-op/low'],
  },
  {
    name: 'type-changes',
    layers: () => [
      {
        entries: [
          f('f2d/child'),
          f('d2f', 'now a file'),
          f('dnd/new'),
          f('sym2d/y'),
          ln('d2sym', '../elsewhere'),
          f('fifo2file', 'now a file'),
          { type: 'fifo', path: 'file2fifo' },
          f('dev2dir/q'),
          ln('file2sym', 'd2f'),
          f('sym2file', 'was a symlink'),
        ],
      },
      { entries: [f('dnd', 'a file in the middle'), f('dnd2/x')] },
      {
        entries: [
          f('f2d', 'was a file'),
          f('d2f/a'), f('d2f/b/c'),
          f('dnd/old'), f('dnd/sub/old'),
          ln('sym2d', '/etc'),
          f('d2sym/x'),
          { type: 'fifo', path: 'fifo2file' },
          f('file2fifo', 'was a file'),
          { type: 'chardev', path: 'dev2dir', major: 1, minor: 3 },
          f('file2sym', 'was a file'),
          ln('sym2file', '/etc/passwd'),
          ln('dnd2', '/etc'),
        ],
      },
    ],
    absent: ['/d2f/a', '/dnd/old', '/dnd/sub', '/sym2d/passwd', '/d2sym/x'],
  },
  {
    name: 'symlinks',
    errorChecks: true,
    setup: (root) => {
      fs.mkdirSync(path.join(root, 'secret'), { recursive: true });
      fs.writeFileSync(path.join(root, 'secret', 'SECRET'), 'outside the branches\n');
    },
    layers: () => [
      {
        entries: [
          ln('a', '/etc'), // over a directory in the lower layer
          f('b/x'), // a directory over a symlink to /etc
          d('c/etc-fake'), // a directory over a symlink to ../../..
          f('p/q/r'), // a deeper directory over a symlink
          f('s/mine'), // a directory over a relative symlink leaving the branch
          f('x/y/z/w'), // x/y is a symlink to /etc below
          f('dirlink/g'), // a directory over a symlink to a directory of the same layer
          ln('top-escape', '../../../../../../../../etc/hostname'),
          ln('top-abs', '/etc/hostname'),
          ln('uni', '日本/ファイル'),
          ln('long-target', 't'.repeat(1000)),
        ],
      },
      {
        entries: [
          f('a/zz-only-in-lower'), f('a/sub/deep'),
          ln('b', '/etc'),
          ln('c', '../../..'),
          ln('p', '/etc'),
          ln('s', '../secret'),
          ln('x/y', '/etc'),
          ln('rel', 'target.txt'), f('target.txt', 'target\n'),
          f('realdir/f'), ln('dirlink', 'realdir'),
          ln('chain1', 'chain2'), ln('chain2', 'target.txt'),
          ln('dangling', 'does/not/exist'),
          ln('abs-in', '/a'),
          ln('self', 'self'),
          ln('dotdot', '..'),
          ln('empty-ish', '.'),
          ln('owned', 'target.txt', { uid: 1000, gid: 1001 }),
        ],
      },
    ],
    absent: [
      '/b/passwd', '/b/hostname', '/c/etc', '/c/proc', '/c/tmp', '/p/passwd', '/p/hostname', '/s/SECRET',
      '/x/y/passwd', '/x/y/hostname', '/dirlink/f',
    ],
    absentFollow: ['/a/zz-only-in-lower', '/a/sub/deep'],
  },
  {
    name: 'special-files-and-hardlinks',
    layers: () => [
      {
        entries: [
          wh('h2'),
          f('h3', 'replaced, not a link any more'),
          f('t1', 'top link group'), { type: 'hardlink', path: 't2', target: 't1' },
          { type: 'hardlink', path: 'tsub/t3', target: 't1' },
          { type: 'fifo', path: 'fifo-top', mode: 0o600 },
        ],
      },
      {
        entries: [
          f('h1', 'linked content\n', { mode: 0o640, uid: 5, gid: 6 }),
          { type: 'hardlink', path: 'h2', target: 'h1' },
          { type: 'hardlink', path: 'h3', target: 'h1' },
          { type: 'hardlink', path: 'sub/h4', target: 'h1' },
          { type: 'fifo', path: 'fifo', mode: 0o644 },
          { type: 'fifo', path: 'dir/fifo2', mode: 0o620, uid: 1000, gid: 1000 },
          { type: 'chardev', path: 'null', major: 1, minor: 3, mode: 0o666 },
          { type: 'chardev', path: 'bigdev', major: 300, minor: 70000, mode: 0o600 },
        ],
      },
    ],
    absent: ['/h2'],
  },
  {
    name: 'odd-names',
    layers: () => [
      {
        entries: [
          wh('a b'), wh('日本'), wh('a:b'), wh('a,b'), wh('tab\there'),
          f('héllo wörld', 'top héllo\n'),
          f('x=y', 'top'),
          d('dir é', { opaque: true }), f('dir é/ünïcode inside'),
          ln('link→日本', '日本/ファイル'),
          f('.whatever/file'),
          f('new 新しい/ファイル:名,前'),
        ],
      },
      {
        entries: [
          ...ODD_NAMES.map((n) => f(n, `bottom ${n}\n`)),
          f('日本/ファイル', 'nihon'),
          f('dir é/hidden by opaque'),
          f('dots/.../x'), f('dots/..../y'),
        ].filter((e, i, all) => all.findIndex((o) => o.path === e.path) === i && e.path !== '日本'),
      },
    ],
    absent: ['/a b', '/日本', '/a:b', '/a,b', '/tab\there', '/dir é/hidden by opaque'],
  },
  {
    name: 'deep-paths',
    layers: () => {
      const p40 = deepPath(40);
      const p39 = deepPath(39);
      const p20 = deepPath(20);
      return [
        {
          entries: [
            f(`${p40}/leaf`, 'top leaf\n'),
            wh(`${p39}/w`),
            f(`${p20}/new-at-20`),
            d(deepPath(10), { mode: 0o700, mtime: T(2020, 2, 2) }),
          ],
        },
        {
          entries: [f(`${p40}/leaf`, 'bottom leaf\n'), f(`${p39}/w`), f(`${p40}/other`), f(`${p39}/x`)],
        },
      ];
    },
    absent: [`/${deepPath(39)}/w`],
  },
  {
    name: 'xattrs',
    errorChecks: true,
    layers: () => [
      {
        entries: [
          d('dx', { xattrs: { 'user.top': 'top dir' } }),
          f('dx/f'),
          f('over', 'top', { xattrs: { 'user.new': 'n' } }),
          f('plain-over-xattr', 'top has none'),
        ],
      },
      {
        entries: [
          d('dx', { xattrs: { 'user.lower': 'lower dir', 'user.top': 'lower value' } }),
          d('lower-only-dir', { xattrs: { 'user.d': 'only in lower' } }),
          f('over', 'bottom', { xattrs: { 'user.old': 'o' } }),
          f('plain-over-xattr', 'lower has one', { xattrs: { 'user.gone': 'g' } }),
          f('many', 'x', {
            xattrs: {
              'user.a': '1',
              'user.empty': '',
              'user.bin': Buffer.from([0, 1, 2, 255, 254, 10, 13, 0]),
              'user.big': 'v'.repeat(2000),
              'user.unicode.日本': 'värde',
              'user.overlay.looks-private': 'but is not (no userxattr option)',
              'trusted.visible-to-root': 'yes',
              'trusted.overlay.private': 'must be hidden',
              'trusted.overlay.opaque': 'y', // on a FILE: meaningless, still hidden
            },
          }),
        ],
      },
    ],
  },
  {
    name: 'modes-owners-times',
    layers: () => [
      {
        entries: [
          f('m0000', 'zero', { mode: 0o000 }),
          f('m0600', 'six', { mode: 0o600, uid: 1000, gid: 1000 }),
          f('m4755', 'setuid', { mode: 0o4755 }),
          f('m4755-user', 'setuid user', { mode: 0o4755, uid: 1234, gid: 5678 }),
          f('m2755', 'setgid', { mode: 0o2755, gid: 50 }),
          f('m6777', 'all', { mode: 0o6777 }),
          d('sticky', { mode: 0o1777 }),
          d('private', { mode: 0o700, uid: 1000, gid: 1000 }),
          f('private/inside', 'x', { mode: 0o400, uid: 65534, gid: 65534 }),
          d('noperm', { mode: 0o000 }),
          f('noperm/still-there'),
          f('epoch', 'e', { mtime: 0 }),
          f('before-epoch', 'b', { mtime: -1500 }),
          f('ms-precise', 'p', { mtime: T(2024, 2, 29, 23, 59, 59, 999) }),
          f('future', 'f', { mtime: T(2100, 1, 1) }),
          d('mixed', { mode: 0o755, uid: 0, gid: 0, mtime: T(2010, 1, 1) }),
          f('mixed/top'),
          ln('owned-link', 'm0000', { uid: 1000, gid: 1000, mtime: T(2005, 5, 5) }),
        ],
      },
      {
        entries: [
          d('mixed', { mode: 0o700, uid: 1000, gid: 1000, mtime: T(1999, 1, 1) }),
          f('mixed/bottom', 'b', { mode: 0o444, uid: 4294967294, gid: 4294967294 }),
          f('m0600', 'lower version', { mode: 0o777 }),
        ],
      },
    ],
  },
  {
    name: 'sparse-5g',
    layers: () => [
      { entries: [f('small', 'small top file\n'.repeat(1000)), f('dir/over', 'top')] },
      {
        entries: [
          f('big.img', 'head of the sparse file\n', { size: 5 * GiB, writes: [{ offset: SPARSE_MARKER_OFFSET, data: SPARSE_MARKER }] }),
          f('dir/over', 'bottom, longer than the top one'),
          f('exact-64k', Buffer.alloc(65536, 0x61)),
          f('odd-size', Buffer.alloc(131_071, 0x62)),
        ],
      },
    ],
    reads: [
      ['/big.img', 0, 64],
      ['/big.img', 1 * GiB, 64],
      ['/big.img', 4 * GiB - 3, 16],
      ['/big.img', SPARSE_MARKER_OFFSET, 64],
      ['/big.img', SPARSE_MARKER_OFFSET - 10, 64],
      ['/big.img', 5 * GiB - 1, 16],
      ['/big.img', 5 * GiB, 16],
      ['/big.img', 6 * GiB, 16],
      ['/exact-64k', 65530, 100],
      ['/odd-size', 131_000, 200],
      ['/odd-size', 65536, 131072],
    ],
  },
  {
    name: 'many-layers',
    layers: () => {
      const n = 12;
      const out: LayerSpec[] = [];
      for (let i = 0; i < n; i++) {
        const entries: Entry[] = [];
        if (i === 5) { out.push({ entries: [] }); continue; } // an empty layer in the middle
        entries.push(f('common', `from layer ${i}\n`));
        entries.push(f(`only${i}`));
        entries.push(f(`d/f${i}`));
        if (i % 2 === 0 && i + 1 < n) entries.push(wh(`only${i + 1}`));
        if (i === 3) entries.push(d('d', { opaque: true }));
        out.push({ entries });
      }
      return out;
    },
  },
  {
    name: 'single-lower',
    kernelPhantoms: true,
    note: 'One lower only (the kernel oracle gets an extra empty bottom layer, which the kernel requires).',
    layers: () => [
      { entries: [f('a'), f('d/b'), wh('gone-at-root'), wh('d/gone-in-dir'), ln('s', 'a'), d('op', { opaque: true }), f('op/x')] },
    ],
    absent: ['/gone-at-root', '/d/gone-in-dir'],
  },
  {
    name: 'layer-paths-with-colons',
    note: 'Layer directories whose names contain ":" (escaped as "\\:" in lowerdir=), spaces, "=" and unicode.',
    layers: () => [
      { name: 'lay:er 0=日', entries: [f('a', 'top'), wh('b')] },
      { name: 'lay:er:1', entries: [f('a', 'bottom'), f('b'), f('c:d')] },
      { name: ':2:', entries: [f('e')] },
    ],
  },
  {
    name: 'layers-on-separate-filesystems',
    separateFs: true,
    note: 'Each layer on its own tmpfs built in the same order, so inode numbers collide across layers.',
    layers: () => [
      { entries: [f('a', 'top a'), f('b', 'top b'), f('sub/c', 'top c'), f('t1', 'top link'), { type: 'hardlink', path: 't2', target: 't1' }, f('top-only')] },
      { entries: [f('x', 'low x'), f('y', 'low y'), f('sub/z', 'low z'), f('l1', 'low link'), { type: 'hardlink', path: 'l2', target: 'l1' }, f('a', 'low a'), f('low-only')] },
    ],
  },
  {
    name: 'layer-paths-via-symlinks',
    viaSymlinks: true,
    layers: () => [
      { entries: [f('a', 'top'), wh('b'), ln('c', 'a')] },
      { entries: [f('a', 'bottom'), f('b'), f('d/e')] },
      { entries: [f('g')] },
    ],
  },
  {
    name: 'layer-paths-with-commas',
    note: 'Layer directories whose names contain "," (escaped as "\\," in lowerdir=; the kernel accepts it).',
    layers: () => [
      { name: 'lay,er0', entries: [f('a', 'top')] },
      { name: 'lay\\er,1', entries: [f('a', 'bottom'), f('b')] },
    ],
  },
];

/** The 100k-entry directory, split across two layers with whiteouts (compared by listing + samples). */
export const BIG_TOTAL = 100_000;
export function bigDirLayers(): LayerSpec[] {
  const name = (i: number) => `f${String(i).padStart(6, '0')}`;
  const top: Entry[] = [];
  const bottom: Entry[] = [];
  // bottom: 0..59999; top: 50000..99999 (10000 overlap, different content), whiteouts of every 50th in 0..49999.
  for (let i = 0; i < 60_000; i++) bottom.push({ type: 'file', path: `big/${name(i)}`, content: i % 1000 === 0 ? `bottom ${i}\n` : '' });
  for (let i = 50_000; i < BIG_TOTAL; i++) top.push({ type: 'file', path: `big/${name(i)}`, content: i % 1000 === 0 ? `top ${i}\n` : '', mode: 0o600 });
  for (let i = 0; i < 50_000; i += 50) top.push({ type: 'whiteout', path: `big/${name(i)}` });
  return [{ entries: top }, { entries: bottom }];
}
