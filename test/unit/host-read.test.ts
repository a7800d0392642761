// src/host/fs.ts read(): cached data is read on the calling thread (the addon's RWF_NOWAIT
// read), the rest through libuv's pool; either way the caller gets what pread(2) would give.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { read } from '../../src/host/fs.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-host-read-'));
test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));

const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));
const file = path.join(dir, 'f');
fs.writeFileSync(file, data);

test('reads give the bytes at their offset, short at the end of the file, none past it', async (t) => {
  const fd = fs.openSync(file, 'r');
  try {
    for (const [pos, len] of [[0, 10], [0, 300_000], [4095, 4098], [123_457, 100_000], [299_990, 64], [300_000, 16], [400_000, 16], [0, 0]] as const) {
      const buf = Buffer.alloc(len + 8, 0xee); // room after: nothing may be written there
      const n = await read(fd, buf, len, pos);
      const want = data.subarray(pos, Math.min(pos + len, data.length));
      t.is(n, want.length, `${pos}+${len}`);
      t.true(buf.subarray(0, n).equals(want), `${pos}+${len}: data`);
      t.true(buf.subarray(len).every((b) => b === 0xee), `${pos}+${len}: nothing past len`);
    }
  } finally {
    fs.closeSync(fd);
  }
});

test('a read that fails fails with the errno of read(2)', async (t) => {
  const fd = fs.openSync(dir, 'r'); // a directory: EISDIR
  try {
    await t.throwsAsync(read(fd, Buffer.alloc(16), 16, 0), { code: 'EISDIR' });
  } finally {
    fs.closeSync(fd);
  }
  await t.throwsAsync(read(987_654, Buffer.alloc(16), 16, 0), { code: 'EBADF' });
});
