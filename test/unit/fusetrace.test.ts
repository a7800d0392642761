// bench/e2e/lib/fusetrace.ts: the bench's count of FUSE requests, read from the kernel's
// fuse tracepoints. Each request counts once, under its opcode, with the time from its send to
// its answer; an answer without its send (the trace began in between) and a send without an
// answer (the trace ended first) are not counted; an overflowed buffer is reported.
import test from 'ava';
import { parseTrace, totalOf } from '../../bench/e2e/lib/fusetrace.js';

// Lines as /sys/kernel/tracing/.../trace prints them (Linux 6.18); task names may hold spaces.
const TRACE = `# tracer: nop
#
# entries-in-buffer/entries-written: 9/12   #P:2
#
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
  layerfs /tmp/m-3313    [001] ..... 13374.300000: fuse_request_end: connection 47 req 2 len 16 error 0
            stat-10684   [001] ...1. 13374.312718: fuse_request_send: connection 47 req 6 opcode 1 (FUSE_LOOKUP) len 48
  layerfs /tmp/m-3313    [000] ..... 13374.312730: fuse_request_end: connection 47 req 6 len 144 error 0
            stat-10684   [001] ...1. 13374.312800: fuse_request_send: connection 47 req 8 opcode 1 (FUSE_LOOKUP) len 48
            find-10685   [000] ...1. 13374.312810: fuse_request_send: connection 47 req 10 opcode 44 (FUSE_READDIRPLUS) len 80
  layerfs /tmp/m-3313    [000] ..... 13374.312900: fuse_request_end: connection 47 req 10 len 1616 error 0
  layerfs /tmp/m-3313    [000] ..... 13374.312840: fuse_request_end: connection 47 req 8 len 16 error -2
            stat-10684   [001] ...1. 13374.313000: fuse_request_send: connection 47 req 12 opcode 3 (FUSE_GETATTR) len 56
`;

test('requests are counted by opcode with the time to their answer; unpaired events are not', (t) => {
  const r = parseTrace(TRACE);
  t.deepEqual(Object.keys(r.counts).sort(), ['LOOKUP', 'READDIRPLUS']);
  t.is(r.counts.LOOKUP?.n, 2, 'two lookups, one of them answered with an error');
  t.is(Math.round(r.counts.LOOKUP?.us ?? 0), 12 + 40);
  t.is(r.counts.READDIRPLUS?.n, 1);
  t.is(Math.round(r.counts.READDIRPLUS?.us ?? 0), 90);
  t.is(r.lost, 3, 'entries written but no longer in the buffer');
  t.deepEqual({ n: totalOf(r.counts).n, us: Math.round(totalOf(r.counts).us) }, { n: 3, us: 142 });
});

test('an empty trace counts nothing', (t) => {
  const r = parseTrace('# tracer: nop\n# entries-in-buffer/entries-written: 0/0   #P:2\n');
  t.deepEqual(r.counts, {});
  t.is(r.lost, 0);
});
