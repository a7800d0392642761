// src/counted-lru.ts (D46): lru-cache bounded by a count it keeps itself, beside the byte bound.
import test from 'ava';
import { CountedLRU } from '../../src/counted-lru.js';

const make = (maxEntries: number, maxSize = 1_000_000): CountedLRU<string, { n: number }> =>
  new CountedLRU(maxEntries, { maxSize, sizeCalculation: (v) => v.n });

test('never more entries than the count; the least recently used goes first', (t) => {
  const c = make(3);
  for (const k of ['a', 'b', 'c']) c.set(k, { n: 1 });
  t.truthy(c.get('a')); // a is now the most recently used, b the least
  c.set('d', { n: 1 });
  t.is(c.size, 3);
  t.deepEqual([...c.keys()].sort(), ['a', 'c', 'd']);
  for (let i = 0; i < 1000; i++) c.set(`x${i}`, { n: 1 });
  t.is(c.size, 3);
  t.deepEqual([...c.keys()].sort(), ['x997', 'x998', 'x999']);
  t.is(c.calculatedSize, 3, 'the evicted entries are no longer counted in bytes');
});

test('replacing a key does not count it twice', (t) => {
  const c = make(2);
  c.set('a', { n: 1 });
  c.set('b', { n: 1 });
  c.set('a', { n: 2 });
  t.is(c.size, 2);
  t.is(c.get('a')?.n, 2);
  t.is(c.get('b')?.n, 1);
});

test('the byte bound still applies below the count', (t) => {
  const c = make(100, 10);
  for (const k of ['a', 'b', 'c']) c.set(k, { n: 4 });
  t.is(c.size, 2);
  t.is(c.peek('a'), undefined);
  t.is(c.calculatedSize, 8);
});

test('deleted entries free their room for the count', (t) => {
  const c = make(2);
  c.set('a', { n: 1 });
  c.set('b', { n: 1 });
  c.delete('a');
  c.set('c', { n: 1 });
  t.is(c.get('b')?.n, 1, 'b stays: the room a left is used, nothing is evicted');
  t.is(c.get('c')?.n, 1);
});

test('a cache with room for no entry is refused', (t) => {
  t.throws(() => make(0), { instanceOf: RangeError });
  t.throws(() => make(1.5), { instanceOf: RangeError });
});
