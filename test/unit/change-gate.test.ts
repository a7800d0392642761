// src/change-gate.ts: shared sections overlap; an exclusive one waits for those under way and
// holds new ones back until it ends.
import test from 'ava';
import { ChangeGate } from '../../src/change-gate.js';

const tick = () => new Promise((r) => setImmediate(r));

test('an exclusive section waits for shared ones under way and holds back new ones', async (t) => {
  const g = new ChangeGate();
  const log: string[] = [];
  let release1!: () => void;
  const s1 = g.shared(async () => {
    log.push('s1 start');
    await new Promise<void>((r) => (release1 = r));
    log.push('s1 end');
  });
  await tick();
  const ex = g.exclusive(async () => {
    log.push('ex start');
    await tick();
    log.push('ex end');
  });
  await tick();
  const s2 = g.shared(async () => void log.push('s2'));
  await tick();
  t.deepEqual(log, ['s1 start'], 'the exclusive section and the later shared one wait');
  release1();
  await Promise.all([s1, ex, s2]);
  t.deepEqual(log, ['s1 start', 's1 end', 'ex start', 'ex end', 's2']);
});

test('shared sections run side by side; errors leave the gate usable', async (t) => {
  const g = new ChangeGate();
  let inside = 0;
  let most = 0;
  await Promise.all(
    Array.from({ length: 5 }, () =>
      g.shared(async () => {
        most = Math.max(most, ++inside);
        await tick();
        inside--;
      }),
    ),
  );
  t.is(most, 5);
  await t.throwsAsync(g.exclusive(async () => Promise.reject(new Error('boom'))), { message: 'boom' });
  await t.throwsAsync(g.shared(async () => Promise.reject(new Error('bang'))), { message: 'bang' });
  t.is(await g.exclusive(async () => 7), 7);
});
