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

test('with the file known (a lower file: size and device), reads give the same bytes and end at that size', async (t) => {
  const fd = fs.openSync(file, 'r');
  const { dev } = fs.fstatSync(fd);
  try {
    // Twice: the second time the addon knows the device (on tmpfs: read without asking first).
    for (let round = 0; round < 2; round++) {
      for (const [pos, len] of [[0, 10], [0, 65536], [299_990, 4096], [300_000, 4096], [4095, 4098]] as const) {
        const buf = Buffer.alloc(len, 0xee);
        const n = await read(fd, buf, len, pos, { size: data.length, dev });
        const want = data.subarray(pos, Math.min(pos + len, data.length));
        t.is(n, want.length, `${pos}+${len}`);
        t.true(buf.subarray(0, n).equals(want), `${pos}+${len}: data`);
      }
    }
    // A size the union was told is where reads end, as the kernel was told it too.
    const buf = Buffer.alloc(4096);
    t.is(await read(fd, buf, 4096, 0, { size: 100, dev }), 100);
    t.true(buf.subarray(0, 100).equals(data.subarray(0, 100)));
  } finally {
    fs.closeSync(fd);
  }
});
