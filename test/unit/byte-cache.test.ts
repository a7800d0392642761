// src/byte-cache.ts (D45): bounded by entries and estimated bytes, and keeping the last value
// too large for the byte bound, one at a time.
import test from 'ava';
import { ByteCache } from '../../src/byte-cache.js';

const sized = (n: number): { n: number } => ({ n });
const make = (ttlMs?: number): ByteCache<{ n: number }> => new ByteCache({ max: 10, maxBytes: 100, sizeOf: (v) => v.n, ttlMs });

test('values within the bound are kept until the bytes run out, least recently used first', (t) => {
  const c = make();
  c.set('a', sized(40));
  c.set('b', sized(40));
  t.truthy(c.get('a')); // a is now the more recently used
  c.set('c', sized(40));
  t.is(c.peek('b'), undefined, 'b went');
  t.deepEqual([c.peek('a')?.n, c.peek('c')?.n], [40, 40]);
  t.is(c.bytes, 80);
});

test('a value larger than the bound is kept all the same, the last one alone, without evicting the rest', (t) => {
  const c = make();
  c.set('small', sized(10));
  c.set('huge', sized(500));
  t.is(c.get('huge')?.n, 500);
  t.is(c.get('small')?.n, 10, 'the others stay');
  t.is(c.size, 2);
  t.is(c.bytes, 510);
  c.set('huger', sized(900));
  t.is(c.get('huge'), undefined, 'one oversized value at a time');
  t.is(c.get('huger')?.n, 900);
  c.set('huger', sized(20));
  t.is(c.get('huger')?.n, 20, 'a key set again within the bound is that value');
  t.is(c.size, 2);
});

test('with a ttl, the oversized value expires like the rest', async (t) => {
  const c = make(30);
  c.set('huge', sized(500));
  c.set('small', sized(10));
  t.truthy(c.get('huge'));
  await new Promise((r) => setTimeout(r, 60));
  t.is(c.get('huge'), undefined);
  t.is(c.get('small'), undefined);
});
