// One error type for the whole filesystem. Core code throws FsError; "not there" is a value
// (undefined / { kind: 'absent' }), never an exception. Node's SystemError becomes FsError only
// in src/host/, and FsError becomes a negative errno only in src/fuse/.
import { constants } from 'node:os';

export type ErrnoCode = keyof typeof constants.errno;

/**
 * An errno outcome. It carries no stack trace: it is an answer, not a bug (a failed lookup is one
 * on every new name), and capturing a trace cost 10 µs of a 25 µs negative lookup (D29).
 */
export class FsError extends Error {
  readonly errno: number;
  readonly code: ErrnoCode;
  readonly syscall: string;
  readonly path: string | undefined;
  constructor(code: ErrnoCode, syscall: string, path?: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(`${code}: ${syscall}${path === undefined ? '' : ` '${path}'`}`);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.name = 'FsError';
    this.code = code;
    this.syscall = syscall;
    this.path = path;
    this.errno = constants.errno[code];
  }
}

export function isErrnoCode(s: unknown): s is ErrnoCode {
  return typeof s === 'string' && Object.hasOwn(constants.errno, s);
}

const codes = new Map<number, ErrnoCode>(Object.entries(constants.errno).map(([k, v]) => [v, k as ErrnoCode]));

/** The code of a positive errno number (EIO for one this host does not know). */
export function codeOfErrno(errno: number): ErrnoCode {
  return codes.get(errno) ?? 'EIO';
}

/** True when e is a Node system error or an FsError with this code. */
export function hasCode(e: unknown, code: ErrnoCode): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === code;
}

/** Turn anything thrown by a node:fs call into an FsError (EIO when it carries no errno code). */
export function fromNodeError(e: unknown, syscall: string, path?: string): FsError {
  if (e instanceof FsError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  return new FsError(isErrnoCode(code) ? code : 'EIO', syscall, path);
}

/** The positive errno to reply with; anything that is not an FsError is a bug and maps to EIO. */
export function toErrno(e: unknown): number {
  return e instanceof FsError ? e.errno : constants.errno.EIO;
}
