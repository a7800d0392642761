// A change made through a writable mount is visible at once to every reader: as soon as the
// changing call returns, a stat or read from this process and from another one shows the new
// state, although both looked at the old one just before (so the kernel's caches and layerfs's
// held it). Caching (issue 4) must never make the merged view stale.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { layerfsCli, withLayerfs } from '../helpers/mounts.js';

const space = scratch(test);

/** What a path shows: type, size, mode, nlink, mtime, and a file's content; or ENOENT. */
function look(p: string): string {
  try {
    const st = fs.lstatSync(p);
    const body = st.isFile() ? ` ${JSON.stringify(fs.readFileSync(p, 'utf8'))}` : st.isDirectory() ? ` [${fs.readdirSync(p).sort().join(',')}]` : '';
    return `${st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other'} size=${st.size} mode=${(st.mode & 0o7777).toString(8)} nlink=${st.nlink} mtime=${st.mtimeMs}${body}`;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'error';
  }
}

/** The same, seen by another process (its own opens and stats). */
function lookElsewhere(p: string): string {
  const src = `${look.toString()}; process.stdout.write(look(process.argv[1]))`;
  const r = spawnSync(process.execPath, ['-e', `const fs = require('fs'); ${src}`, p], { encoding: 'utf8' });
  return r.stdout;
}

const sh = (cmd: string) => {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
};

test('every change through a writable mount shows at once, here and in another process', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('visibility');
  const d = (n: string) => path.join(root, n);
  for (const n of ['top/d/sub', 'base/d', 'upper', 'work']) fs.mkdirSync(d(n), { recursive: true });
  fs.writeFileSync(d('top/d/f'), 'lower');
  fs.writeFileSync(d('base/d/g'), 'g');
  fs.writeFileSync(d('base/d/h'), 'h');
  fs.writeFileSync(d('top/d/sub/x'), 'x');
  await withLayerfs({ lowers: [d('top'), d('base')], upper: d('upper'), work: d('work') }, async (mnt) => {
    const m = (n: string) => path.join(mnt, n);
    const q = (n: string) => `'${m(n)}'`;
    // Each change, made by another process; the paths whose view it changes, and what one of
    // them must show right after (a fragment of look()'s answer).
    const changes: Array<[string, string[], string, string]> = [
      [`printf more >> ${q('d/f')}`, ['d/f'], 'd/f', '"lowermore"'],
      [`chmod 600 ${q('d/f')}`, ['d/f'], 'd/f', 'mode=600'],
      [`touch -m -d 2001-01-01 ${q('d/f')}`, ['d/f'], 'd/f', `mtime=${Date.parse('2001-01-01T00:00:00')}`],
      [`ln ${q('d/f')} ${q('d/f2')}`, ['d/f', 'd/f2', 'd'], 'd/f', 'nlink=2'],
      // Through one name of a file with two, seen through the other (the kernel keeps each
      // name's attributes apart: these must not be kept).
      [`printf 2 >> ${q('d/f2')}`, ['d/f', 'd/f2'], 'd/f', '"lowermore2"'],
      [`chmod 640 ${q('d/f2')}`, ['d/f', 'd/f2'], 'd/f', 'mode=640'],
      // A lower file: the link copies it up first, so its name now leads to another inode.
      [`ln ${q('d/h')} ${q('d/h2')}`, ['d/h', 'd/h2', 'd'], 'd/h', 'nlink=2'],
      [`rm ${q('d/f2')}`, ['d/f', 'd/f2', 'd'], 'd/f', 'nlink=1'],
      [`printf new > ${q('d/n')}`, ['d/n', 'd'], 'd', '[f,g,h,h2,n,sub]'],
      [`mv ${q('d/g')} ${q('d/g2')}`, ['d/g', 'd/g2', 'd'], 'd/g', 'ENOENT'],
      [`rm ${q('d/g2')}`, ['d/g2', 'd'], 'd', '[f,h,h2,n,sub]'],
      [`mv ${q('d/sub')} ${q('moved')}`, ['d/sub', 'd/sub/x', 'moved', 'moved/x', 'd'], 'moved/x', '"x"'],
      [`mkdir ${q('d/sub')}`, ['d/sub', 'd/sub/x', 'd'], 'd/sub', '[]'],
      [`rm -r ${q('moved')}`, ['moved', 'moved/x'], 'moved/x', 'ENOENT'],
    ];
    for (const [cmd, paths, probe, fragment] of changes) {
      for (const p of paths) {
        look(m(p)); // the old state, now cached wherever it can be
        lookElsewhere(m(p));
      }
      sh(cmd);
      const here = Object.fromEntries(paths.map((p) => [p, look(m(p))]));
      const there = Object.fromEntries(paths.map((p) => [p, lookElsewhere(m(p))]));
      t.deepEqual(there, here, `after ${cmd}: another process sees what this one sees`);
      t.true(here[probe]?.includes(fragment), `after ${cmd}: ${probe} shows ${here[probe]}, expected ${fragment}`);
    }
    t.is(look(m('d/f2')), 'ENOENT');
    t.is(look(m('d/sub/x')), 'ENOENT', 'the new d/sub does not show the moved one\'s entries');
    t.is(look(m('moved')), 'ENOENT');
  });
});

// The kernel keeps a file's attributes for a second in a writable union (D29). An open for
// writing copies a lower file up without changing what the kernel saw happen to it: layerfs has
// the kernel forget them, so a stat right after shows the copy, as on the kernel's overlayfs
// (which shows its upper file's ctime once the file is copied up).
test('a copy-up by an open for writing shows at once: stat gives the upper copy\'s ctime', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('visibility-copyup');
  const d = (n: string) => path.join(root, n);
  for (const n of ['lower', 'upper', 'work']) fs.mkdirSync(d(n), { recursive: true });
  fs.writeFileSync(d('lower/f'), 'lower');
  const old = new Date('2001-01-01T00:00:00Z');
  fs.utimesSync(d('lower/f'), old, old);
  await withLayerfs({ lowers: [d('lower')], upper: d('upper'), work: d('work') }, async (mnt) => {
    const f = path.join(mnt, 'f');
    const before = fs.statSync(f, { bigint: true }); // now kept by the kernel
    await new Promise((r) => setTimeout(r, 20)); // a copy made later has another ctime
    fs.closeSync(fs.openSync(f, 'r+')); // copies up, changes nothing else
    const after = fs.statSync(f, { bigint: true });
    const copy = fs.statSync(d('upper/f'), { bigint: true });
    t.not(copy.ctimeNs, before.ctimeNs, 'the copy is newer than the lower file');
    t.is(after.ctimeNs, copy.ctimeNs);
    t.is(after.mtimeNs, before.mtimeNs, 'the copy keeps the mtime');
    t.is(after.ino, before.ino, 'and the inode number');
  });
});

// D74: the kernel keeps a directory's attributes as long as a file's. A copy-up below a
// directory changes its ctime and size with no request on it (the upper directory is made, an
// entry is put in it), and layerfs has the kernel forget them: a stat right after shows the
// upper directories, as on the kernel's overlayfs. Before D74 they could be a second old (D25).
test('a deep copy-up shows at once in the directories above it: stat gives the upper directories\' ctime and size', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('visibility-dirs');
  const d = (n: string) => path.join(root, n);
  for (const n of ['lower/a/b', 'upper', 'work']) fs.mkdirSync(d(n), { recursive: true });
  fs.writeFileSync(d('lower/a/b/f'), 'lower');
  await withLayerfs({ lowers: [d('lower')], upper: d('upper'), work: d('work') }, async (mnt) => {
    const m = (n: string) => path.join(mnt, n);
    const shown = (n: string) => {
      const st = fs.statSync(m(n), { bigint: true });
      return { ctimeNs: st.ctimeNs, size: st.size };
    };
    for (const n of ['a', 'a/b']) shown(n); // now kept by the kernel
    lookElsewhere(m('a/b'));
    await new Promise((r) => setTimeout(r, 20)); // a copy made later has another ctime
    sh(`printf more >> '${m('a/b/f')}'`); // copies up a, a/b and f: no request on a or a/b
    for (const n of ['a', 'a/b']) {
      const up = fs.statSync(d(`upper/${n}`), { bigint: true });
      t.deepEqual(shown(n), { ctimeNs: up.ctimeNs, size: up.size }, `${n}: the upper directory's ctime and size`);
    }
    t.true(lookElsewhere(m('a/b')).startsWith('dir size='), 'and another process sees it');
  });
});

// D70: in a writable union the kernel keeps a lower file's pages across opens, as in a read-only
// one (a program's binary and libraries are read once, not at every exec). That must not hide a
// change: a write copies the file up, and every reader, also one that had it open, then reads
// the copy. With passthrough (the kernel writes the upper file itself) and without.
for (const passthrough of ['on', 'off']) {
  test(`a lower file is read from its layer once, yet a change through the mount shows at once (passthrough=${passthrough})`, async (t) => {
    if (!requireMountCapable(t)) return;
    const root = await space.dir(`keep-pages-${passthrough}`);
    const d = (n: string) => path.join(root, n);
    for (const n of ['lower', 'upper', 'work']) fs.mkdirSync(d(n), { recursive: true });
    const data = Buffer.alloc(256 * 1024, 'l');
    fs.writeFileSync(d('lower/f'), data);
    await withLayerfs({ lowers: [d('lower')], upper: d('upper'), work: d('work'), options: [`passthrough=${passthrough}`] }, async (mnt) => {
      const f = path.join(mnt, 'f');
      const reads = async (): Promise<number> => {
        const r = await layerfsCli(['stats', '--json', mnt]);
        return (JSON.parse(r.stdout) as { ops: Record<string, { count: number }> }).ops['read']?.count ?? 0;
      };
      sh(`cat '${f}' > /dev/null`);
      const first = await reads();
      t.true(first > 0, 'the first read reached layerfs');
      sh(`cat '${f}' > /dev/null`);
      t.is(await reads(), first, 'the second open read the pages the kernel kept');
      const held = fs.openSync(f, 'r'); // open on the lower file while it changes
      try {
        t.is(fs.readFileSync(held).toString('latin1', 0, 4), 'llll');
        sh(`printf CHANGED | dd of='${f}' conv=notrunc status=none`);
        const b = Buffer.alloc(7);
        fs.readSync(held, b, 0, 7, 0);
        t.is(b.toString(), 'CHANGED', 'a reader that had it open reads the copy');
      } finally {
        fs.closeSync(held);
      }
      t.is(fs.readFileSync(f).subarray(0, 8).toString(), 'CHANGEDl', 'a new open reads the copy');
      t.is(spawnSync('sh', ['-c', `head -c 7 '${f}'`], { encoding: 'utf8' }).stdout, 'CHANGED', 'so does another process');
      t.is(fs.readFileSync(d('upper/f')).subarray(0, 8).toString(), 'CHANGEDl');
    });
  });
}
