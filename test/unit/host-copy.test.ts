// src/host/fs.ts copyFileData(): a copy-up's data, copied from an fd opened with O_NOATIME (D40),
// on the calling thread up to SMALL_WRITE and in libuv's pool (layerfs's addon) above it. The
// lower atimes themselves are checked through mounts (test/differential/lower-atime.test.ts).
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SMALL_WRITE, copyFileData } from '../../src/host/fs.js';
import type { RealPath } from '../../src/path.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-host-copy-'));
test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));

const R = (p: string): RealPath => p as RealPath;
const bytes = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * seed + (i >> 9)) & 0xff));

test('files of every size are copied byte for byte, as a new file of mode 0600', async (t) => {
  for (const size of [0, 1, 4096, SMALL_WRITE, SMALL_WRITE + 1, 3 * 1024 * 1024 + 17]) {
    const from = path.join(dir, `src-${size}`);
    const to = path.join(dir, `dst-${size}`);
    const data = bytes(size, 13);
    fs.writeFileSync(from, data, { mode: 0o755 });
    await copyFileData(R(from), R(to), size);
    t.true(fs.readFileSync(to).equals(data), `${size} bytes`);
    t.is(fs.statSync(to).mode & 0o777, 0o600, `${size} bytes: mode`);
  }
});

test('the copy goes on to the end of the source, whatever size the caller was told', async (t) => {
  const from = path.join(dir, 'grown');
  const data = bytes(SMALL_WRITE * 3, 7);
  fs.writeFileSync(from, data);
  await copyFileData(R(from), R(path.join(dir, 'grown-small')), 10);
  await copyFileData(R(from), R(path.join(dir, 'grown-large')), SMALL_WRITE + 1);
  t.true(fs.readFileSync(path.join(dir, 'grown-small')).equals(data));
  t.true(fs.readFileSync(path.join(dir, 'grown-large')).equals(data));
});

test('a destination that exists is refused and left as it was; a missing source leaves nothing', async (t) => {
  for (const size of [10, SMALL_WRITE * 2]) {
    const from = path.join(dir, `exists-src-${size}`);
    const to = path.join(dir, `exists-dst-${size}`);
    fs.writeFileSync(from, bytes(size, 3));
    fs.writeFileSync(to, 'mine');
    await t.throwsAsync(copyFileData(R(from), R(to), size), { code: 'EEXIST' });
    t.is(fs.readFileSync(to, 'utf8'), 'mine');
    const missing = path.join(dir, `missing-${size}`);
    await t.throwsAsync(copyFileData(R(missing), R(`${missing}-copy`), size), { code: 'ENOENT' });
    t.false(fs.existsSync(`${missing}-copy`));
  }
});

test('a copy between two filesystems (sendfile where copy_file_range cannot) is exact', async (t) => {
  const other = fs.existsSync('/dev/shm') ? fs.mkdtempSync('/dev/shm/layerfs-host-copy-') : undefined;
  if (other === undefined || fs.statSync(other).dev === fs.statSync(dir).dev) {
    if (other !== undefined) fs.rmSync(other, { recursive: true, force: true });
    t.log('no second filesystem at /dev/shm: the copy between filesystems was not tried');
    t.pass();
    return;
  }
  try {
    for (const size of [5000, SMALL_WRITE * 4 + 3]) {
      const from = path.join(dir, `cross-${size}`);
      const data = bytes(size, 11);
      fs.writeFileSync(from, data);
      await copyFileData(R(from), R(path.join(other, `copy-${size}`)), size);
      t.true(fs.readFileSync(path.join(other, `copy-${size}`)).equals(data), `${size} bytes`);
    }
  } finally {
    fs.rmSync(other, { recursive: true, force: true });
  }
});
