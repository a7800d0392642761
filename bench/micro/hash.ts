// Where would xxhash-wasm pay on the hot path? (issue 4: decide each use by measurement.)
// `npm run bench:hash` (no root, no FUSE). Three candidate uses, each against what layerfs does
// now, on the same vpaths (a rootfs-like set of --paths paths), medians of --rounds rounds:
//   cache key   lru-cache get by the vpath string (now) vs h64 of the vpath then get by the hash
//   dir print   a directory listing's fingerprint: h64 over its names vs a sorted join compared
//               as a string (what a revalidation of a lower directory would need)
//   inode       the inode number of an entry on a device past the exact ranges: inode.ts's
//               mix(dev, ino) (now) vs h64 of the 16 bytes (dev, ino)
import { performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import xxhash from 'xxhash-wasm';
import { InodeNumbers } from '../../src/inode.js';
import { Rng } from '../e2e/lib/rng.js';
import { mdTable, summarize } from '../e2e/lib/stats.js';

interface Options { paths: number; rounds: number }

function parseArgs(argv: string[]): Options {
  const o: Options = { paths: 100_000, rounds: 7 };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === '--paths') o.paths = Number(v);
    else if (k === '--rounds') o.rounds = Number(v);
    else throw new Error(`unknown option ${k}`);
  }
  return o;
}

function makePaths(n: number): string[] {
  const rng = new Rng(42);
  const dirs = ['usr/lib/x86_64-linux-gnu', 'usr/share/doc', 'usr/share/locale/de/LC_MESSAGES', 'etc', 'var/lib/dpkg/info', 'usr/include/linux'];
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const d = dirs[rng.int(0, dirs.length - 1)]!;
    out.push(`/${d}/sub${rng.int(0, 199)}/file-${i}-${rng.int(0, 1e6).toString(36)}.so`);
  }
  return out;
}

/** ns per operation of fn over n items. */
function time(n: number, fn: () => number): { ns: number; sink: number } {
  const t0 = performance.now();
  const sink = fn();
  return { ns: ((performance.now() - t0) * 1e6) / n, sink };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const { h64Raw } = await xxhash();
  const enc = new TextEncoder();
  const paths = makePaths(o.paths);
  const byString = new LRUCache<string, number>({ max: o.paths * 2 });
  const byHash = new LRUCache<bigint, number>({ max: o.paths * 2 });
  paths.forEach((p, i) => {
    byString.set(p, i);
    byHash.set(h64Raw(enc.encode(p)), i);
  });
  const listing = Array.from({ length: 1000 }, (_, i) => `entry-${i}-${(i * 7919).toString(36)}`);
  const inodes = new InodeNumbers([1]);
  for (let d = 0; d < 600; d++) inodes.of(1000 + d, 1); // push a device past the exact ranges
  const devBuf = new Uint8Array(16);
  const dv = new DataView(devBuf.buffer);

  const rows: Record<string, number[]> = {};
  const add = (k: string, v: number): void => void (rows[k] ??= []).push(v);
  let sink = 0;
  for (let r = 0; r < o.rounds; r++) {
    const cases: [string, number, () => number][] = [
      ['cache key: get by vpath string', paths.length, () => { let s = 0; for (const p of paths) s += byString.get(p) ?? 0; return s; }],
      ['cache key: h64(vpath), get by hash', paths.length, () => { let s = 0; for (const p of paths) s += byHash.get(h64Raw(enc.encode(p))) ?? 0; return s; }],
      ['dir print: sorted join (1000 names)', 200, () => { let s = 0; for (let i = 0; i < 200; i++) s += [...listing].sort().join('\0').length; return s; }],
      ['dir print: h64 of names (1000 names)', 200, () => { let s = 0; for (let i = 0; i < 200; i++) s += Number(h64Raw(enc.encode([...listing].sort().join('\0'))) & 0xffn); return s; }],
      ['inode: mix(dev, ino)', paths.length, () => { let s = 0; for (let i = 0; i < paths.length; i++) s += inodes.of(1599, i) % 7; return s; }],
      ['inode: h64(dev, ino)', paths.length, () => {
        let s = 0;
        for (let i = 0; i < paths.length; i++) {
          dv.setBigUint64(0, 1599n, true);
          dv.setBigUint64(8, BigInt(i), true);
          s += Number(h64Raw(devBuf) & 7n);
        }
        return s;
      }],
    ];
    for (const [name, n, fn] of cases) {
      const x = time(n, fn);
      sink += x.sink;
      add(name, x.ns);
    }
  }
  const table = Object.entries(rows).map(([k, v]) => {
    const s = summarize(v)!;
    return [k, s.median.toFixed(0), s.min.toFixed(0), s.max.toFixed(0)];
  });
  process.stdout.write(mdTable(['case', 'median ns/op', 'min', 'max'], table) + `\n(${o.paths} paths, ${o.rounds} rounds; sink ${sink % 10})\n`);
}

await main();
