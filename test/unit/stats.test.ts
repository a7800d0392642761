// src/stats.ts: the latency histogram puts every value in a bucket that holds it, percentiles are
// upper bounds within one bucket (12.5%) of the true value and never above the largest seen,
// errors are counted by code, and the table shows what a person asks for.
import test from 'ava';
import fc from 'fast-check';
import { BUCKETS, OpCounters, OpRecord, bucketOf, bucketRange, formatMicros, formatStats, type MountStats } from '../../src/stats.js';

test('every latency falls in a bucket that holds it; buckets are ordered and contiguous', (t) => {
  for (let i = 0; i < BUCKETS - 1; i++) t.is(bucketRange(i)[1], bucketRange(i + 1)[0], `bucket ${i}`);
  t.is(bucketRange(0)[0], 0);
  t.is(bucketRange(BUCKETS - 1)[1], 2 ** 32);
  fc.assert(
    fc.property(fc.double({ min: 0, max: 2 ** 32 - 1, noNaN: true }), (us) => {
      const [lo, hi] = bucketRange(bucketOf(us));
      return lo <= Math.floor(us) && Math.floor(us) < hi && hi - lo <= Math.max(1, lo / 8);
    }),
  );
  t.is(bucketOf(-5), 0);
  t.is(bucketOf(1e12), BUCKETS - 1, 'beyond the range: the last bucket');
});

test('percentiles are upper bounds within one bucket of the exact value', (t) => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 10_000_000 }), { minLength: 1, maxLength: 500 }), (values) => {
      const r = new OpRecord();
      for (const v of values) r.add(v, undefined);
      const sorted = [...values].sort((a, b) => a - b);
      for (const q of [0.5, 0.9, 0.99, 1]) {
        const exact = sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
        const got = r.percentile(q);
        if (got < exact || got > Math.max(exact + 1, exact * 1.125 + 1) || got > r.maxMicros) return false;
      }
      return true;
    }),
  );
  const r = new OpRecord();
  for (let us = 1; us <= 1000; us++) r.add(us, undefined);
  t.true(r.percentile(0.5) >= 500 && r.percentile(0.5) <= 560, String(r.percentile(0.5)));
  t.true(r.percentile(0.99) >= 990 && r.percentile(0.99) <= 1000, String(r.percentile(0.99)));
  t.is(r.percentile(1), 1000);
  t.is(new OpRecord().percentile(0.5), 0);
});

test('operations are counted by name, errors by code', (t) => {
  const c = new OpCounters();
  c.record('getattr', 10);
  c.record('getattr', 20, 'ENOENT');
  c.record('getattr', 30, 'ENOENT');
  c.record('create', 400, 'EEXIST');
  const s = c.snapshot();
  t.deepEqual(Object.keys(s), ['create', 'getattr']);
  t.is(s.getattr!.count, 3);
  t.is(s.getattr!.errors, 2);
  t.deepEqual(s.getattr!.errorCodes, { ENOENT: 2 });
  t.is(s.getattr!.meanMicros, 20);
  t.is(s.getattr!.maxMicros, 30);
  t.deepEqual(s.create!.errorCodes, { EEXIST: 1 });
});

test('the stats table', (t) => {
  const c = new OpCounters();
  for (let i = 0; i < 10; i++) c.record('create', 150);
  c.record('getattr', 2500, 'ENOENT');
  const stats: MountStats = {
    mountpoint: '/mnt/x', pid: 42, uptimeSeconds: 12.4, ops: c.snapshot(),
    cache: {
      resolver: { hits: 3, misses: 1, hitRatio: 0.75, entries: 4, bytes: 2048 },
      dirs: { hits: 0, misses: 0, hitRatio: 0, entries: 0, bytes: 0 },
    },
    copyUps: { count: 2, bytes: 3 * 1024 * 1024 },
    whiteouts: { written: 5, opaqueDirs: 1 },
    inFlight: { count: 0, oldest: [] },
  };
  const out = formatStats(stats);
  t.regex(out, /^\/mnt\/x: layerfs server pid 42, up 12s$/m);
  t.regex(out, /^create +10 +0 +150µs +150µs +150µs +150µs$/m);
  t.regex(out, /^getattr +1 +1 +2\.50ms .* ENOENT 1$/m);
  t.regex(out, /^resolver +3 +1 +75\.0% +4 +2\.0 KiB$/m);
  t.regex(out, /^copy-ups: 2 \(3\.0 MiB of file data copied\)$/m);
  t.regex(out, /^whiteouts written: 5; directories made opaque: 1$/m);
  t.notRegex(out, /in flight/);
  // A request waiting a second or more is named; one just arrived is only counted.
  const stuck = formatStats({
    ...stats,
    inFlight: { count: 2, oldest: [{ op: 'rmdir', path: '/a/b', seconds: 612.34 }, { op: 'getattr', path: '/c', seconds: 0.001 }] },
  });
  t.regex(stuck, /^requests in flight: 2; waiting a second or more:\n {2}rmdir \/a\/b: 612\.3s$/m);
  t.notRegex(stuck, /getattr \/c:/);
  t.is(formatMicros(850), '850µs');
  t.is(formatMicros(12_345), '12.3ms');
  t.is(formatMicros(2_100_000), '2.10s');
});
