// src/fuse/kernel/listing-attrs.ts: when READDIRPLUS answers carry file attributes (D42). The
// session's use of it, on the wire: test/unit/kernel-session.test.ts.
import test from 'ava';
import { ListingAttrs, PROBE_EVERY } from '../../src/fuse/kernel/listing-attrs.js';

/** A listing of `dir` whose files are `names`; true when they got attributes. */
function list(l: ListingAttrs, dir: number, names: readonly string[]): boolean {
  const withFiles = l.startListing(dir);
  if (!withFiles) for (const n of names) l.listedBare(dir, n);
  return withFiles;
}

test('a mount starts by probing; a probe nothing looks up keeps listings bare', (t) => {
  const l = new ListingAttrs();
  t.false(list(l, 1, ['a', 'b']));
  t.false(list(l, 2, ['a', 'b']));
  t.false(list(l, 3, ['a', 'b']));
});

test('lookups of a quarter of a probe\'s names give the next listings attributes', (t) => {
  const l = new ListingAttrs();
  list(l, 1, ['a', 'b', 'c', 'd']);
  l.lookedUp(1, 'a');
  t.true(list(l, 2, ['a']));
});

test('lookups in another directory, or of names the probe did not list, or twice, do not count', (t) => {
  const l = new ListingAttrs();
  list(l, 1, ['a', 'b', 'c', 'd', 'e']);
  l.lookedUp(2, 'a'); // another directory
  l.lookedUp(1, 'zz'); // not listed bare (a directory, say)
  l.lookedUp(1, 'a');
  l.lookedUp(1, 'a'); // once is one hit
  t.false(list(l, 3, ['x']), '1 hit of 5 is under a quarter');
});

test('with attributes, one listing in PROBE_EVERY is a probe; a probe nothing looks up makes them bare', (t) => {
  const l = new ListingAttrs();
  list(l, 1, ['a']);
  l.lookedUp(1, 'a');
  const got: boolean[] = [];
  for (let i = 0; i < 2 * PROBE_EVERY; i++) {
    const dir = 100 + i;
    got.push(list(l, dir, ['a']));
    l.lookedUp(dir, 'a');
  }
  t.is(got.filter((g) => !g).length, 2);
  // Now a probe that nothing follows.
  let i = 0;
  while (list(l, 1000 + i, ['a'])) i++;
  t.false(list(l, 2000, ['a']), 'bare after the probe went unused');
  t.is(l.switches, 1, 'one change of mode: to bare');
});

test('a directory with no files listed bare decides nothing', (t) => {
  const l = new ListingAttrs();
  list(l, 1, ['a']);
  l.lookedUp(1, 'a');
  t.true(list(l, 2, []));
  // Force the next probe to be one with no files: the mode stays.
  let i = 0;
  while (list(l, 10 + i, [])) i++;
  t.true(list(l, 500, ['a']));
});
