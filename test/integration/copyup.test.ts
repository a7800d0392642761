// Copy-up through a real writable mount:
// a. two processes that open one lower file for writing at the same moment cause one copy-up,
//    and both their writes land (20 files of 8 MiB, two separately spawned writers each);
// b. a file descriptor opened read-only before the copy-up keeps reading valid data while the
//    copy is made, and afterwards reads what the kernel's overlayfs shows (the upper copy);
// c. a copy-up of a sparse file larger than 2^32 bytes completes (no per-request timeout), is
//    exact, keeps its holes (D68: the upper copy takes the file's data, not its size), and is
//    done by the kernel (copy_file_range / splice): the server makes a handful of read/write
//    system calls for its 160 MiB of data.
// The writers are other processes (a Node process must never use a FUSE mount it serves; the
// test process is not the server either, and it only reads through the mount, asynchronously).
import test from 'ava';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { findFuseServerPid, withKernelOverlay, withLayerfs } from '../helpers/mounts.js';

const space = scratch(test);

const MiB = 1 << 20;
const GiB = 1 << 30;

interface Layers {
  lower: string;
  upper: string;
  work: string;
}

function layersIn(base: string): Layers {
  const l = { lower: path.join(base, 'lower'), upper: path.join(base, 'upper'), work: path.join(base, 'work') };
  for (const d of Object.values(l)) fs.mkdirSync(d, { recursive: true });
  return l;
}

/** Run a process to its end; stdout, stderr and exit code. */
function spawnRun(cmd: string, args: string[], timeoutMs = 300_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (b: Buffer) => (out += b.toString()));
    c.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

/**
 * A writer process: waits for the `go` file (so that many start at the same moment), opens the
 * file O_WRONLY, writes `len` bytes of `fill` at `off`, and reports how long its open took and
 * which inode its fd ended up on.
 */
const WRITER = `
const fs = require('fs');
const [file, off, len, fill, go] = process.argv.slice(1);
const tick = new Int32Array(new SharedArrayBuffer(4));
while (!fs.existsSync(go)) Atomics.wait(tick, 0, 0, 1);
const t0 = process.hrtime.bigint();
const fd = fs.openSync(file, fs.constants.O_WRONLY);
const openMs = Number(process.hrtime.bigint() - t0) / 1e6;
const ino = fs.fstatSync(fd).ino;
const buf = Buffer.alloc(Number(len), fill);
for (let done = 0; done < buf.length; ) done += fs.writeSync(fd, buf, done, buf.length - done, Number(off) + done);
fs.closeSync(fd);
process.stdout.write(JSON.stringify({ openMs, ino }));
`;

const FILES = 20;
const FILE_SIZE = 8 * MiB;
const WRITE_LEN = 256 * 1024;
/** Where each of the two writers of a file writes (distinct, one of them not page-aligned). */
const OFFSETS = [1 * MiB + 123, 6 * MiB];
const FILLS = ['writer-A|', 'writer-B|'];

test('two processes writing one lower file at once: one copy-up, both writes land, no leftovers', async (t) => {
  if (!requireMountCapable(t)) return;
  const base = await space.dir('concurrent-writers');
  const l = layersIn(base);
  const originals: Buffer[] = [];
  for (let i = 0; i < FILES; i++) {
    originals.push(randomBytes(FILE_SIZE));
    fs.writeFileSync(path.join(l.lower, `f${i}`), originals[i]!);
  }
  const lowerSums = originals.map((b) => createHash('sha256').update(b).digest('hex'));
  const go = path.join(base, 'go');
  await withLayerfs({ lowers: [l.lower], upper: l.upper, work: l.work, timeoutMs: 240_000 }, async (mnt) => {
    const writers: Array<Promise<{ code: number | null; out: string; err: string }>> = [];
    for (let i = 0; i < FILES; i++) {
      for (let w = 0; w < 2; w++) {
        writers.push(spawnRun(process.execPath, ['-e', WRITER, path.join(mnt, `f${i}`), String(OFFSETS[w]), String(WRITE_LEN), `${FILLS[w]}${i}|`, go], 120_000));
      }
    }
    // Let all 40 processes start and wait at the barrier, then release them together.
    await new Promise((r) => setTimeout(r, 3000));
    fs.writeFileSync(go, '');
    const results = await Promise.all(writers);
    const reports = results.map((r, k) => {
      t.is(r.code, 0, `writer ${k}: ${r.err}`);
      return JSON.parse(r.out || '{}') as { openMs?: number; ino?: number };
    });
    let overlapping = 0;
    for (let i = 0; i < FILES; i++) {
      const a = reports[2 * i]!;
      const b = reports[2 * i + 1]!;
      const st = await fsp.stat(path.join(mnt, `f${i}`));
      // One copy-up: both writers' fds are on the file that the name leads to now.
      t.is(a.ino, st.ino, `f${i}: writer A's fd is on the final file`);
      t.is(b.ino, st.ino, `f${i}: writer B's fd is on the final file`);
      if ((a.openMs ?? 0) > 2 && (b.openMs ?? 0) > 2) overlapping++;
      const want = Buffer.from(originals[i]!);
      for (let w = 0; w < 2; w++) want.fill(`${FILLS[w]}${i}|`, OFFSETS[w]!, OFFSETS[w]! + WRITE_LEN);
      const got = await fsp.readFile(path.join(mnt, `f${i}`));
      t.is(got.length, FILE_SIZE, `f${i}: size`);
      t.true(got.equals(want), `f${i}: both writes and the original data around them, through the mount`);
      t.true(fs.readFileSync(path.join(l.upper, `f${i}`)).equals(want), `f${i}: the same in the upper`);
    }
    const opens = reports.map((r) => r.openMs ?? -1).sort((x, y) => x - y);
    t.log(`open(O_WRONLY) times (ms): min ${opens[0]?.toFixed(1)}, median ${opens[opens.length >> 1]?.toFixed(1)}, max ${opens[opens.length - 1]?.toFixed(1)}; files whose two opens both waited for a copy (> 2 ms): ${overlapping}/${FILES}`);
    t.deepEqual(fs.readdirSync(path.join(l.work, 'work')), [], 'no leftovers in the work dir while mounted');
  });
  t.deepEqual(fs.readdirSync(path.join(l.work, 'work')), [], 'no leftovers in the work dir after the unmount');
  t.deepEqual(fs.readdirSync(l.upper).sort(), Array.from({ length: FILES }, (_, i) => `f${i}`).sort(), 'the upper holds the copied files only');
  for (let i = 0; i < FILES; i++) {
    t.is(createHash('sha256').update(fs.readFileSync(path.join(l.lower, `f${i}`))).digest('hex'), lowerSums[i]!, `f${i}: the lower is untouched`);
  }
});

const RO_SIZE = 256 * MiB;
const RO_WRITE_AT = 20 * MiB + 5;
const RO_WRITE = 'W'.repeat(4096);

/**
 * On one mount: open the lower file read-only, read it continuously while another process writes
 * to it (which copies it up), and check every read against the original (the written range may
 * show either); then read once more through the same fd.
 */
async function readerAcrossCopyUp(mnt: string, original: Buffer, data: string): Promise<{ invalid: string[]; reads: number; readsMeanwhile: number; before: string; after: string; afterSize: number; writer: string }> {
  const file = path.join(mnt, 'big.bin');
  const fh = await fsp.open(file, 'r');
  const invalid: string[] = [];
  let reads = 0;
  let readsMeanwhile = 0; // completed while the writer (and with it the copy-up) was under way
  let writerRunning = false;
  try {
    const before = (await fh.read(Buffer.alloc(8), 0, 8, RO_WRITE_AT)).buffer.toString('latin1');
    let writing = true;
    const reader = (async () => {
      const buf = Buffer.alloc(256 * 1024);
      let pos = 0;
      while (writing || reads < 50) {
        pos = (pos + 7 * MiB + 4096 * 13) % (RO_SIZE - buf.length);
        const at = reads % 5 === 0 ? RO_WRITE_AT - 1000 : pos; // often across the written range
        const during = writerRunning;
        const { bytesRead } = await fh.read(buf, 0, buf.length, at);
        reads++;
        if (during && writerRunning) readsMeanwhile++;
        if (bytesRead !== buf.length) {
          invalid.push(`short read at ${at}: ${bytesRead}`);
          continue;
        }
        if (buf.equals(original.subarray(at, at + bytesRead))) continue;
        for (let k = 0; k < bytesRead; k++) {
          const o = at + k;
          if (buf[k] === original[o]) continue;
          if (o >= RO_WRITE_AT && o < RO_WRITE_AT + RO_WRITE.length && buf[k] === 0x57) continue;
          invalid.push(`byte ${o} reads ${buf[k]}, want ${original[o]}`);
          break;
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 50));
    writerRunning = true;
    const w = await spawnRun('dd', [`if=${data}`, `of=${file}`, 'bs=4096', 'conv=notrunc', 'oflag=seek_bytes', `seek=${RO_WRITE_AT}`, 'status=none'], 120_000);
    writerRunning = false;
    writing = false;
    await reader;
    // What the fd reads now must come from the filesystem, not from pages the kernel kept for
    // the FUSE file: another open of the file (and its fadvise DONTNEED) drops them.
    const drop = await spawnRun('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none'], 60_000);
    if (drop.code !== 0) invalid.push(`dd iflag=nocache: ${drop.err}`);
    const after = (await fh.read(Buffer.alloc(8), 0, 8, RO_WRITE_AT)).buffer.toString('latin1');
    return { invalid, reads, readsMeanwhile, before, after, afterSize: (await fh.stat()).size, writer: `exit ${w.code} ${w.err.trim()}` };
  } finally {
    await fh.close();
  }
}

test('a read-only fd opened before the copy-up keeps reading valid data, and the kernel overlay\'s data after it', async (t) => {
  if (!requireMountCapable(t)) return;
  const original = randomBytes(RO_SIZE);
  const data = path.join(await space.dir('ro-data'), 'w.bin');
  fs.writeFileSync(data, RO_WRITE);
  const side = async (who: 'kernel' | 'layerfs') => {
    const l = layersIn(await space.dir(`ro-${who}`));
    fs.writeFileSync(path.join(l.lower, 'big.bin'), original);
    const dirs = { lowers: [l.lower], upper: l.upper, work: l.work, timeoutMs: 120_000 };
    const body = (mnt: string) => readerAcrossCopyUp(mnt, original, data);
    const r = who === 'kernel' ? await withKernelOverlay(dirs, body) : await withLayerfs(dirs, body);
    t.is(fs.readFileSync(path.join(l.upper, 'big.bin')).subarray(RO_WRITE_AT, RO_WRITE_AT + 8).toString(), 'WWWWWWWW', `${who}: copied up and written`);
    return r;
  };
  const kernel = await side('kernel');
  const ours = await side('layerfs');
  t.log(`reads while the writer (copy-up + write) ran: kernel ${kernel.readsMeanwhile} of ${kernel.reads}, layerfs ${ours.readsMeanwhile} of ${ours.reads}`);
  t.true(ours.readsMeanwhile > 0, 'some reads overlapped the copy-up');
  t.is(kernel.writer, 'exit 0 ');
  t.is(ours.writer, 'exit 0 ');
  t.deepEqual(ours.invalid, [], 'every read returned the original data (or the new write)');
  t.deepEqual(kernel.invalid, []);
  t.is(ours.before, original.subarray(RO_WRITE_AT, RO_WRITE_AT + 8).toString('latin1'));
  // After the copy-up the kernel's overlayfs reads the upper copy through the old fd.
  t.is(kernel.after, 'WWWWWWWW');
  t.deepEqual({ after: ours.after, size: ours.afterSize }, { after: kernel.after, size: kernel.afterSize });
});

/**
 * Where the big file holds real data (the rest is a hole): across 2^31 and 2^32, and at its end;
 * and DENSE bytes of it from 3.5 GiB on, more than one piece of the addon's 64 MiB copy.
 */
const DENSE = 160 * MiB;
const DENSE_AT = 3.5 * GiB;
function bigLayout(size: number): Array<{ at: number; data: Buffer }> {
  const at = [0, 1 * GiB - 100, 2 ** 31 - 2048, 2 ** 32 - 2048, 2 ** 32 + 123_457, size - 4096];
  return [...at.filter((a) => a >= 0 && a + 4096 <= size).map((a) => ({ at: a, data: randomBytes(4096) })), { at: DENSE_AT, data: randomBytes(DENSE) }];
}

/** /proc/PID/io and the CPU time of a process. */
function procUsage(pid: number): { syscr: number; syscw: number; rchar: number; wchar: number; utimeS: number; stimeS: number } {
  const io = Object.fromEntries(fs.readFileSync(`/proc/${pid}/io`, 'utf8').trim().split('\n').map((l) => {
    const [k, v] = l.split(':');
    return [k!.trim(), Number(v)];
  })) as Record<string, number>;
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const hz = 100; // USER_HZ on Linux
  return { syscr: io['syscr']!, syscw: io['syscw']!, rchar: io['rchar']!, wchar: io['wchar']!, utimeS: Number(f[11]) / hz, stimeS: Number(f[12]) / hz };
}

function memAvailableBytes(): number {
  const m = /MemAvailable:\s+(\d+) kB/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

test('a copy-up of a sparse 4.5 GiB file completes, is exact, keeps its holes, and is made by the kernel', async (t) => {
  if (!requireMountCapable(t)) return;
  t.timeout(600_000);
  const SIZE = 4.5 * GiB;
  // The copy takes the file's data (a hole is not copied: D68), twice for lower and upper; tmpfs
  // when the memory allows, else a directory on os.tmpdir()'s filesystem.
  const onTmpfs = space.isTmpfs() && memAvailableBytes() > 2 * DENSE + 2 * GiB;
  const base = onTmpfs ? await space.dir('big') : fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-big-'));
  try {
    const l = layersIn(base);
    const big = path.join(l.lower, 'big');
    const layout = bigLayout(SIZE);
    const fd = fs.openSync(big, 'w');
    try {
      fs.ftruncateSync(fd, SIZE);
      for (const { at, data } of layout) fs.writeSync(fd, data, 0, data.length, at);
    } finally {
      fs.closeSync(fd);
    }
    await withLayerfs({ lowers: [l.lower], upper: l.upper, work: l.work, timeoutMs: 540_000 }, async (mnt) => {
      const pid = findFuseServerPid(mnt);
      t.truthy(pid, 'the server process is found');
      const u0 = pid === undefined ? undefined : procUsage(pid);
      const t0 = process.hrtime.bigint();
      // Appending one byte opens the file for writing: the whole file is copied up first.
      const r = await spawnRun('sh', ['-c', 'printf Z >> "$1"', 'sh', path.join(mnt, 'big')], 500_000);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const u1 = pid === undefined ? undefined : procUsage(pid);
      t.is(r.code, 0, `append: ${r.err}`);
      const st = await fsp.stat(path.join(mnt, 'big'));
      t.is(st.size, SIZE + 1, 'size through the mount');
      const fh = await fsp.open(path.join(mnt, 'big'), 'r');
      try {
        for (const { at, data } of layout) {
          const b = Buffer.alloc(data.length);
          await fh.read(b, 0, b.length, at);
          t.true(b.equals(data), `data at ${at} through the mount`);
        }
        for (const hole of [2 ** 31 + 4096, 2 ** 32 + 1 * MiB, DENSE_AT - 4096, DENSE_AT + DENSE]) {
          const b = Buffer.alloc(4096, 1);
          await fh.read(b, 0, b.length, hole);
          t.true(b.every((c) => c === 0), `zeros at ${hole}`);
        }
        const last = Buffer.alloc(1);
        await fh.read(last, 0, 1, SIZE);
        t.is(last.toString(), 'Z', 'the appended byte');
      } finally {
        await fh.close();
      }
      const up = fs.openSync(path.join(l.upper, 'big'), 'r');
      try {
        const st = fs.fstatSync(up);
        t.is(st.size, SIZE + 1, 'size in the upper');
        // The copy is as sparse as the lower file: its data, not 4.5 GiB of zeros.
        const data = layout.reduce((n, x) => n + x.data.length, 0);
        t.true(st.blocks * 512 >= data, `the upper copy holds the data (${st.blocks * 512} bytes allocated)`);
        t.true(st.blocks * 512 < data + 8 * MiB, `the upper copy keeps the holes (${st.blocks * 512} bytes allocated for ${data} of data)`);
        for (const { at, data } of layout) {
          const b = Buffer.alloc(data.length);
          fs.readSync(up, b, 0, b.length, at);
          t.true(b.equals(data), `data at ${at} in the upper`);
        }
      } finally {
        fs.closeSync(up);
      }
      if (u0 !== undefined && u1 !== undefined) {
        const d = { syscr: u1.syscr - u0.syscr, syscw: u1.syscw - u0.syscw, rchar: u1.rchar - u0.rchar, wchar: u1.wchar - u0.wchar };
        const cpu = { user: u1.utimeS - u0.utimeS, system: u1.stimeS - u0.stimeS };
        t.log(`${(SIZE / GiB).toFixed(1)} GiB copy-up + append on ${onTmpfs ? 'tmpfs' : `${os.tmpdir()} (not tmpfs)`}: ${seconds.toFixed(2)} s; ` +
          `server: ${d.syscr} read-type and ${d.syscw} write-type syscalls for ${(d.rchar / GiB).toFixed(2)} GiB read / ${(d.wchar / GiB).toFixed(2)} GiB written; ` +
          `CPU user ${cpu.user.toFixed(2)} s, system ${cpu.system.toFixed(2)} s`);
        // The data went through the kernel's copy (copy_file_range / sendfile move up to 64 MiB
        // per call here and count as one read and one write call each). Under load they return
        // early and are called again: 196 to 35,227 calls for 4.5 GiB in clean-clone CI runs
        // (about 137 KiB a call at worst, 2026-12-07, the shared machine busy). A copy through
        // user space with the 64 KiB buffers of Node's streams and libuv makes a read(2) per
        // 64 KiB; a copy that read the holes would read SIZE bytes.
        const data = layout.reduce((n, x) => n + x.data.length, 0);
        t.true(d.rchar >= data, 'the server moved the data');
        t.true(d.rchar < SIZE / 4, `the holes were not read (${d.rchar} bytes read)`);
        t.true(d.syscr < data / (64 * 1024), `fewer read-type calls than 64 KiB pieces copied (${d.syscr} for ${data} bytes)`);
        t.true(cpu.user < seconds / 2 + 0.5, 'the server spent little CPU time in user space');
      }
      t.deepEqual(fs.readdirSync(path.join(l.work, 'work')), [], 'no leftovers in the work dir');
    });
  } finally {
    if (!onTmpfs) fs.rmSync(base, { recursive: true, force: true });
  }
});
