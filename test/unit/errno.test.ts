// src/errno.ts: the one error type, its conversion from node:fs errors and to FUSE replies.
import test from 'ava';
import * as fs from 'node:fs';
import { constants } from 'node:os';
import { FsError, fromNodeError, hasCode, isErrnoCode, toErrno } from '../../src/errno.js';

const E = constants.errno;

test('FsError carries the code, the matching errno, the syscall and the path', (t) => {
  const e = new FsError('ENOENT', 'open', '/a/b');
  t.true(e instanceof Error);
  t.is(e.name, 'FsError');
  t.is(e.code, 'ENOENT');
  t.is(e.errno, E.ENOENT);
  t.is(e.errno, 2);
  t.is(e.syscall, 'open');
  t.is(e.path, '/a/b');
  t.is(e.message, "ENOENT: open '/a/b'");
  const noPath = new FsError('EROFS', 'mkdir');
  t.is(noPath.path, undefined);
  t.is(noPath.message, 'EROFS: mkdir');
  t.is(noPath.errno, E.EROFS);
  t.is(new FsError('ENODATA', 'getxattr').errno, E.ENODATA);
  t.is(new FsError('ENOTDIR', 'lookup').errno, E.ENOTDIR);
});

test('isErrnoCode knows the errno names and nothing else (not even Object.prototype keys)', (t) => {
  for (const c of ['ENOENT', 'EIO', 'ENOTDIR', 'ENODATA', 'EROFS', 'ELOOP']) t.true(isErrnoCode(c), c);
  for (const c of ['', 'enoent', 'ENOPE', 'toString', 'constructor', '__proto__', 'hasOwnProperty']) t.false(isErrnoCode(c), c);
  for (const v of [2, null, undefined, {}, ['ENOENT']]) t.false(isErrnoCode(v));
});

test('hasCode matches Node system errors and FsErrors by code', (t) => {
  const nodeErr = t.throws(() => fs.statSync('/nonexistent-layerfs-unit/x'));
  t.true(hasCode(nodeErr, 'ENOENT'));
  t.false(hasCode(nodeErr, 'EIO'));
  t.true(hasCode(new FsError('EACCES', 'open'), 'EACCES'));
  t.false(hasCode(new FsError('EACCES', 'open'), 'EPERM'));
  for (const v of [null, undefined, 'ENOENT', 2, new Error('ENOENT')]) t.false(hasCode(v, 'ENOENT'));
});

test('fromNodeError keeps the errno of a system error and names the syscall and path', (t) => {
  const nodeErr = t.throws(() => fs.readdirSync('/etc/passwd'));
  const e = fromNodeError(nodeErr, 'readdir', '/p');
  t.true(e instanceof FsError);
  t.is(e.code, 'ENOTDIR');
  t.is(e.errno, E.ENOTDIR);
  t.is(e.syscall, 'readdir');
  t.is(e.path, '/p');
});

test('fromNodeError returns an FsError as it is', (t) => {
  const orig = new FsError('ELOOP', 'open', '/x');
  t.is(fromNodeError(orig, 'other', '/y'), orig);
});

test('fromNodeError turns anything without an errno code into EIO', (t) => {
  const notErrno = Object.assign(new Error('bad arg'), { code: 'ERR_INVALID_ARG_TYPE' });
  for (const v of [new Error('plain'), notErrno, null, undefined, 'ENOENT', { code: 'toString' }, { code: 5 }]) {
    const e = fromNodeError(v, 'op');
    t.true(e instanceof FsError);
    t.is(e.code, 'EIO');
    t.is(e.errno, E.EIO);
  }
});

test('toErrno gives the FsError errno, and EIO for anything else', (t) => {
  t.is(toErrno(new FsError('ENOENT', 'x')), E.ENOENT);
  t.is(toErrno(new FsError('ENODATA', 'x')), E.ENODATA);
  // A Node error with a code is still not an FsError: it is a bug that reached the reply.
  t.is(toErrno(Object.assign(new Error('x'), { code: 'ENOENT', errno: -2 })), E.EIO);
  for (const v of [new Error('x'), new TypeError('x'), null, undefined, 0, 'ENOENT']) t.is(toErrno(v), E.EIO);
  t.true(toErrno(new Error()) > 0, 'positive errno');
});
