// Calls on open host file descriptors that src/host/fs.ts does not have (yet): kept apart so that
// they could be added without touching that module while it was being reworked; they belong there.
import * as fs from 'node:fs';
import { fromNodeError } from '../errno.js';

/** O_PATH (not in Node's constants): a reference to a file that no I/O goes through. */
export const O_PATH = 0o10000000;

/** fstat with nanosecond times: the attributes of an open file, whether or not a name still leads to it. */
export function fstatNs(fd: number): Promise<fs.BigIntStats> {
  return new Promise((resolve, reject) => {
    fs.fstat(fd, { bigint: true }, (err, st) => {
      if (err) reject(fromNodeError(err, 'fstat'));
      else resolve(st);
    });
  });
}
