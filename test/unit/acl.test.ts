// src/acl.ts: what a new entry inherits from its directory's default ACL (posix_acl_create).
import test from 'ava';
import { inherit } from '../../src/acl.js';
import { FsError } from '../../src/errno.js';

const TAG = { u: 0x01, U: 0x02, g: 0x04, G: 0x08, m: 0x10, o: 0x20 } as const;
type Entry = [keyof typeof TAG, number, number?];

/** The xattr value of an ACL: version 2, then {tag, perm, id} per entry. */
function acl(entries: Entry[]): Buffer {
  const v = Buffer.alloc(4 + entries.length * 8);
  v.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    v.writeUInt16LE(TAG[tag], 4 + i * 8);
    v.writeUInt16LE(perm, 6 + i * 8);
    v.writeUInt32LE(id ?? 0xffff_ffff, 8 + i * 8);
  });
  return v;
}

test('without a default ACL the umask applies, and only when layerfs was given it', (t) => {
  t.deepEqual(inherit(undefined, 0o666, 0o022, false), { mode: 0o644 });
  t.deepEqual(inherit(undefined, 0o2775, 0o027, true), { mode: 0o2750 });
  t.deepEqual(inherit(undefined, 0o644, undefined, false), { mode: 0o644 });
  // An empty ACL is no ACL.
  t.deepEqual(inherit(acl([]), 0o666, 0o022, false), { mode: 0o644 });
});

test('a default ACL with named entries gives an access ACL cut down to the mode, and no umask', (t) => {
  const dflt = acl([['u', 7], ['U', 7, 65534], ['g', 5], ['m', 7], ['o', 0]]);
  const file = inherit(dflt, 0o666, 0o022, false);
  // Group bits show the mask (rw- after the mode's rw-), other follows the ACL's ---.
  t.is(file.mode, 0o660);
  t.deepEqual(file.access, acl([['u', 6], ['U', 7, 65534], ['g', 5], ['m', 6], ['o', 0]]));
  t.is(file.defaults, undefined);
  const dir = inherit(dflt, 0o777, 0o077, true);
  t.is(dir.mode, 0o770);
  t.deepEqual(dir.access, acl([['u', 7], ['U', 7, 65534], ['g', 5], ['m', 7], ['o', 0]]));
  t.is(dir.defaults, dflt);
  // The parent's default ACL itself is left as it was.
  t.deepEqual(dflt, acl([['u', 7], ['U', 7, 65534], ['g', 5], ['m', 7], ['o', 0]]));
});

test('a default ACL of the three base entries only sets the mode bits', (t) => {
  const made = inherit(acl([['u', 7], ['g', 5], ['o', 1]]), 0o4777, 0o077, false);
  t.deepEqual(made, { mode: 0o4751 });
});

test('a malformed default ACL is an I/O error, not a guess', (t) => {
  for (const bad of [Buffer.from([2, 0, 0]), Buffer.from([1, 0, 0, 0]), acl([['u', 7], ['o', 0]]), Buffer.concat([acl([['u', 7]]), Buffer.from([1])])]) {
    t.throws(() => inherit(bad, 0o666, 0o022, false), { instanceOf: FsError, message: /EIO/ });
  }
  const unknownTag = acl([['u', 7], ['g', 5], ['o', 0]]);
  unknownTag.writeUInt16LE(0x40, 4);
  t.throws(() => inherit(unknownTag, 0o666, 0o022, false), { instanceOf: FsError, message: /EIO/ });
});
