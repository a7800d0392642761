// What a running mount has done, for `layerfs stats` and the API's stats(): per FUSE operation a
// count, errors by code, and a latency histogram; plus the union's own counters (resolver cache
// hits, copy-ups, whiteouts). Recording sits on every request's path, so it allocates nothing
// per operation: each op owns a fixed array of log-linear buckets, filled by integer arithmetic.
import type { Union } from './union.js';

/**
 * Buckets of whole microseconds: 0..7 one each, then 8 per power of two (so a bucket is at most
 * 1/8 of its values wide, and a percentile read from it is within 12.5%), up to 2^32 µs (71 min).
 */
const SUB = 8;
const SUB_BITS = 3;
export const BUCKETS = (32 - SUB_BITS + 1) * SUB;

/** The bucket of a latency in µs. */
export function bucketOf(micros: number): number {
  const x = micros >= 0xffff_ffff ? 0xffff_ffff : micros > 0 ? Math.floor(micros) : 0;
  if (x < SUB) return x;
  const e = 31 - Math.clz32(x); // x < 2^(e+1), e >= SUB_BITS
  return (e - SUB_BITS + 1) * SUB + ((x >>> (e - SUB_BITS)) & (SUB - 1));
}

/** The smallest and one past the largest whole µs a bucket holds. */
export function bucketRange(i: number): [number, number] {
  if (i < SUB) return [i, i + 1];
  const e = Math.floor(i / SUB) + SUB_BITS - 1;
  const width = 2 ** (e - SUB_BITS);
  const low = (SUB + (i % SUB)) * width;
  return [low, low + width];
}

/** One operation's record. */
export class OpRecord {
  count = 0;
  errors = 0;
  sumMicros = 0;
  maxMicros = 0;
  readonly buckets = new Uint32Array(BUCKETS);
  /** Failures by errno code (ENOENT from a lookup is an answer, EIO a problem: tell them apart). */
  readonly errorCodes = new Map<string, number>();

  add(micros: number, error: string | undefined): void {
    this.count++;
    this.sumMicros += micros;
    if (micros > this.maxMicros) this.maxMicros = micros;
    this.buckets[bucketOf(micros)]!++;
    if (error !== undefined) {
      this.errors++;
      this.errorCodes.set(error, (this.errorCodes.get(error) ?? 0) + 1);
    }
  }

  /**
   * The latency that fraction q (0..1] of the operations did not exceed, as the upper end of its
   * bucket (never more than the largest seen): an upper bound within one bucket's width.
   */
  percentile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.buckets[i]!;
      if (seen >= rank) return Math.min(bucketRange(i)[1], this.maxMicros);
    }
    return this.maxMicros;
  }

  snapshot(): OpStats {
    return {
      count: this.count,
      errors: this.errors,
      errorCodes: Object.fromEntries(this.errorCodes),
      meanMicros: this.count === 0 ? 0 : this.sumMicros / this.count,
      p50Micros: this.percentile(0.5),
      p90Micros: this.percentile(0.9),
      p99Micros: this.percentile(0.99),
      maxMicros: this.maxMicros,
    };
  }
}

/** Counts and latencies of the FUSE operations a mount served. */
export class OpCounters {
  readonly #ops = new Map<string, OpRecord>();

  /** One operation finished after `micros`; error: its errno code when it failed. */
  record(op: string, micros: number, error?: string): void {
    let r = this.#ops.get(op);
    if (r === undefined) {
      r = new OpRecord();
      this.#ops.set(op, r);
    }
    r.add(micros, error);
  }

  snapshot(): Record<string, OpStats> {
    const out: Record<string, OpStats> = {};
    for (const [op, r] of [...this.#ops].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) out[op] = r.snapshot();
    return out;
  }
}

/** One FUSE operation's figures; latencies in µs, measured in layerfs (not the kernel's round trip). */
export interface OpStats {
  readonly count: number;
  readonly errors: number;
  readonly errorCodes: Readonly<Record<string, number>>;
  readonly meanMicros: number;
  readonly p50Micros: number;
  readonly p90Micros: number;
  readonly p99Micros: number;
  readonly maxMicros: number;
}

export interface CacheStats {
  readonly hits: number;
  readonly misses: number;
  /** hits / (hits + misses); 0 before the first lookup. */
  readonly hitRatio: number;
  readonly entries: number;
  /** Estimated heap bytes of what the cache holds. */
  readonly bytes: number;
}

/** A request the server has not answered yet: its operation, the path it is about, its age. */
export interface InFlight {
  readonly op: string;
  readonly path: string;
  readonly seconds: number;
}

/** Requests being answered now: how many, and the longest waiting (at most IN_FLIGHT_SHOWN). */
export interface InFlightStats {
  readonly count: number;
  readonly oldest: readonly InFlight[];
}

/** Everything `layerfs stats` shows of one running mount. */
export interface MountStats {
  readonly mountpoint: string;
  readonly pid: number;
  readonly uptimeSeconds: number;
  /** Per FUSE operation, by its name (getattr, readdir, create, ...); only operations seen. */
  readonly ops: Readonly<Record<string, OpStats>>;
  readonly cache: {
    /** Resolutions of paths to branches. */
    readonly resolver: CacheStats;
    /** Listings of lower-branch directories. */
    readonly dirs: CacheStats;
  };
  /** Entries copied from a lower into the upper before a change, and their file data in bytes. */
  readonly copyUps: { readonly count: number; readonly bytes: number };
  /** Whiteouts written into the upper, and directories marked opaque. */
  readonly whiteouts: { readonly written: number; readonly opaqueDirs: number };
  /** Known with the kernel engine; the libfuse engine tells none. */
  readonly inFlight: InFlightStats;
  /** Where the kernel reads and writes upper files itself (FUSE passthrough, D51). */
  readonly passthrough?: PassthroughStats | undefined;
  /** READs of lower files answered through a pipe (D56); the kernel engine's. */
  readonly spliced?: SplicedStats | undefined;
}

/** READs answered from a file through a pipe since the mount, and the bytes they carried. */
export interface SplicedStats {
  readonly reads: number;
  readonly bytes: number;
}

/** Backing files registered with the kernel since the mount, and registered now. */
export interface PassthroughStats {
  readonly registered: number;
  readonly open: number;
}

/** How many of the requests in flight the stats list. */
export const IN_FLIGHT_SHOWN = 10;

export function cacheStats(hits: number, misses: number, entries: number, bytes: number): CacheStats {
  const total = hits + misses;
  return { hits, misses, hitRatio: total === 0 ? 0 : hits / total, entries, bytes };
}

/** The figures of a running union and its served operations. */
export function mountStats(
  union: Union, ops: OpCounters, mountpoint: string, uptimeSeconds: number,
  inFlight: InFlightStats = { count: 0, oldest: [] },
  passthrough?: PassthroughStats,
  spliced?: SplicedStats,
): MountStats {
  const c = union.ctx.resolver.cacheStats();
  const up = union.ctx.upper;
  return {
    mountpoint,
    pid: process.pid,
    uptimeSeconds,
    ops: ops.snapshot(),
    cache: {
      resolver: cacheStats(c.hits, c.misses, c.entries, c.bytes),
      dirs: cacheStats(c.dirHits, c.dirMisses, c.dirs, c.dirBytes),
    },
    copyUps: { count: up?.copyUp.counts.copies ?? 0, bytes: up?.copyUp.counts.bytes ?? 0 },
    whiteouts: { written: up?.whiteouts.counts.whiteouts ?? 0, opaqueDirs: up?.whiteouts.counts.opaques ?? 0 },
    inFlight,
    ...(passthrough === undefined ? {} : { passthrough }),
    ...(spliced === undefined ? {} : { spliced }),
  };
}

/** A latency for people: 850µs, 12.3ms, 2.10s. */
export function formatMicros(us: number): string {
  if (us < 1000) return `${Math.round(us)}µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)}ms`;
  return `${(us / 1_000_000).toFixed(2)}s`;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

function table(rows: readonly (readonly string[])[], rightAligned: (col: number) => boolean): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => [...(r[c] ?? '')].length)));
  return rows
    .map((r) => r.map((cell, c) => (rightAligned(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd())
    .join('\n');
}

const percent = (ratio: number): string => `${(ratio * 100).toFixed(1)}%`;

/** The table `layerfs stats` prints. */
export function formatStats(s: MountStats): string {
  const out: string[] = [`${s.mountpoint}: layerfs server pid ${s.pid}, up ${s.uptimeSeconds.toFixed(0)}s`, ''];
  const ops = Object.entries(s.ops);
  if (ops.length === 0) {
    out.push('no operations yet');
  } else {
    const rows = [['operation', 'count', 'errors', 'p50', 'p90', 'p99', 'max', 'error codes']];
    for (const [op, o] of ops) {
      const codes = Object.entries(o.errorCodes).map(([c, n]) => `${c} ${n}`).join(', ');
      rows.push([op, String(o.count), String(o.errors), formatMicros(o.p50Micros), formatMicros(o.p90Micros), formatMicros(o.p99Micros), formatMicros(o.maxMicros), codes]);
    }
    out.push(table(rows, (c) => c >= 1 && c <= 6));
  }
  out.push('');
  const cache = [['cache', 'hits', 'misses', 'hit ratio', 'entries', 'size']];
  for (const [name, c] of [['resolver', s.cache.resolver], ['dir listings', s.cache.dirs]] as const) {
    cache.push([name, String(c.hits), String(c.misses), percent(c.hitRatio), String(c.entries), formatBytes(c.bytes)]);
  }
  out.push(table(cache, (c) => c >= 1));
  out.push('');
  out.push(`copy-ups: ${s.copyUps.count} (${formatBytes(s.copyUps.bytes)} of file data copied)`);
  if (s.passthrough !== undefined) out.push(`passthrough: ${s.passthrough.registered} backing files so far, ${s.passthrough.open} now`);
  if (s.spliced !== undefined) out.push(`reads spliced from lower files: ${s.spliced.reads} (${formatBytes(s.spliced.bytes)})`);
  out.push(`whiteouts written: ${s.whiteouts.written}; directories made opaque: ${s.whiteouts.opaqueDirs}`);
  // (inFlight: absent from the stats of a server older than this field)
  const waiting = (s.inFlight?.oldest ?? []).filter((r) => r.seconds >= 1);
  if (waiting.length > 0) {
    out.push('', `requests in flight: ${s.inFlight.count}; waiting a second or more:`);
    for (const r of waiting) out.push(`  ${r.op} ${r.path}: ${r.seconds.toFixed(1)}s`);
  }
  return `${out.join('\n')}\n`;
}
