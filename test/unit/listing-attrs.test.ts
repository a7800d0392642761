// src/fuse/kernel/listing-attrs.ts: when READDIRPLUS answers carry file attributes (D42). The
// session's use of it, on the wire: test/unit/kernel-session.test.ts.
import test from 'ava';
import { ListingAttrs, PROBE_EVERY, PROBES_KEPT } from '../../src/fuse/kernel/listing-attrs.js';

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

test('with attributes, one listing in PROBE_EVERY is a probe; PROBES_KEPT probes nothing looks up make them bare', (t) => {
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
  // Now probes that nothing follows: the mode holds while one of the latest probes was used.
  let probes = 0;
  let i = 0;
  for (; i < 10 * PROBE_EVERY * PROBES_KEPT; i++) {
    if (!list(l, 1000 + i, ['a'])) probes++;
    if (probes === PROBES_KEPT) break;
  }
  t.is(probes, PROBES_KEPT);
  t.false(list(l, 2000, ['a']), 'bare once the latest probes all went unused');
  t.is(l.switches, 1, 'one change of mode: to bare');
});

test('a probe counts the lookups that come after later listings (a depth-first walk)', (t) => {
  // du lists a directory, stats its entries in order, and lists each subdirectory's tree as it
  // reaches it: the files listed after a subdirectory are looked up after that tree's listings.
  const l = new ListingAttrs();
  t.false(list(l, 1, ['a', 'b', 'c', 'd']), 'the first listing is a probe');
  t.false(list(l, 2, ['x']), 'nothing looked up yet: bare');
  l.lookedUp(1, 'a');
  l.lookedUp(1, 'b');
  t.true(list(l, 3, ['y']), 'the first probe reached a quarter, after the second listing');
  // With attributes, a new probe whose names come late does not turn the mode while an earlier
  // probe of the latest ones was used.
  let i = 0;
  while (list(l, 10 + i, ['p', 'q'])) i++;
  const late = 10 + i;
  for (let k = 0; k < PROBE_EVERY - 2; k++) t.true(list(l, 100 + k, ['z']));
  l.lookedUp(late, 'p');
  t.true(list(l, 200, ['z']));
  t.is(l.switches, 2, 'to bare at the second listing, back at the third, and no more');
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
