/**
 * FUSE requests as the kernel sees them: its `fuse:fuse_request_send` and `fuse:fuse_request_end`
 * tracepoints (Linux 6.13+), read through a tracefs instance of the bench's own, so that the
 * host's trace buffer is left alone. Counts every request a command sends to a FUSE server, and
 * the time from its send to its answer, by opcode.
 *
 * What decides a FUSE filesystem's speed is how many requests reach user space, and what each
 * costs there: the counts show a request one filesystem sends and another does not (D58 was
 * found so), the times what a server takes against the wake-ups around it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from './sys.js';

/** By opcode name (LOOKUP, GETATTR, ...): requests answered, and their summed time in µs. */
export type RequestCounts = Record<string, { n: number; us: number }>;

export interface TraceResult {
  readonly counts: RequestCounts;
  /** Events the buffer had no room for: the counts are then a lower bound. */
  readonly lost: number;
}

const TRACEFS = '/sys/kernel/tracing';
const INSTANCE = 'layerfs-bench';
/** Per CPU: ~230k events for the largest workload (`ls -lR`), at ~60 bytes each. */
const BUFFER_KIB = 32 * 1024;

const SEND = /^\s*\S.*?\s(\d+\.\d+): fuse_request_send: connection \d+ req (\d+) opcode \d+ \((\w+)\)/;
const END = /^\s*\S.*?\s(\d+\.\d+): fuse_request_end: connection \d+ req (\d+)/;
const ENTRIES = /entries-in-buffer\/entries-written: (\d+)\/(\d+)/;

export class FuseTrace {
  private mountedTracefs = false;

  private constructor(private readonly dir: string) {}

  /** A tracer, or why there can be none (no tracefs, no FUSE tracepoints: Linux before 6.13). */
  static open(): FuseTrace | string {
    let mounted = false;
    if (!fs.existsSync(path.join(TRACEFS, 'instances'))) {
      const r = run('mount', ['-t', 'tracefs', 'nodev', TRACEFS]);
      if (!r.ok) return `tracefs is not mounted at ${TRACEFS} and mounting it failed`;
      mounted = true;
    }
    const dir = path.join(TRACEFS, 'instances', INSTANCE);
    try {
      if (!fs.existsSync(dir)) fs.mkdirSync(dir);
      if (!fs.existsSync(path.join(dir, 'events', 'fuse', 'fuse_request_send'))) {
        fs.rmdirSync(dir);
        if (mounted) run('umount', [TRACEFS]);
        return 'this kernel has no fuse tracepoints (Linux 6.13+)';
      }
      fs.writeFileSync(path.join(dir, 'buffer_size_kb'), String(BUFFER_KIB));
    } catch (e) {
      if (mounted) run('umount', [TRACEFS]);
      return `cannot set up a trace instance: ${(e as Error).message}`;
    }
    const t = new FuseTrace(dir);
    t.mountedTracefs = mounted;
    return t;
  }

  /** Empty the buffer and start recording. */
  start(): void {
    fs.writeFileSync(path.join(this.dir, 'trace'), '');
    fs.writeFileSync(path.join(this.dir, 'events', 'fuse', 'enable'), '1');
  }

  /** Stop recording, and count what was recorded since start(). */
  stop(): TraceResult {
    fs.writeFileSync(path.join(this.dir, 'events', 'fuse', 'enable'), '0');
    return parseTrace(fs.readFileSync(path.join(this.dir, 'trace'), 'utf8'));
  }

  /** Remove the instance (and tracefs, where this mounted it). */
  close(): void {
    try {
      fs.writeFileSync(path.join(this.dir, 'events', 'fuse', 'enable'), '0');
      fs.rmdirSync(this.dir);
    } catch {
      // already gone
    }
    if (this.mountedTracefs) run('umount', [TRACEFS]);
  }
}

/** Pair each send with its end by the request's unique id; a request not answered is not counted. */
export function parseTrace(text: string): TraceResult {
  const sent = new Map<string, { t: number; op: string }>();
  const counts: RequestCounts = {};
  let lost = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) {
      const m = ENTRIES.exec(line);
      if (m) lost = Number(m[2]) - Number(m[1]);
      continue;
    }
    const s = SEND.exec(line);
    if (s) {
      sent.set(s[2] as string, { t: Number(s[1]), op: (s[3] as string).replace(/^FUSE_/, '') });
      continue;
    }
    const e = END.exec(line);
    if (!e) continue;
    const from = sent.get(e[2] as string);
    if (from === undefined) continue;
    sent.delete(e[2] as string);
    const c = (counts[from.op] ??= { n: 0, us: 0 });
    c.n++;
    c.us += (Number(e[1]) - from.t) * 1e6;
  }
  return { counts, lost };
}

/** All requests of a result: count and summed time. */
export function totalOf(c: RequestCounts): { n: number; us: number } {
  let n = 0;
  let us = 0;
  for (const v of Object.values(c)) {
    n += v.n;
    us += v.us;
  }
  return { n, us };
}
