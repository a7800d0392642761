// tar-stream, with PAX records that carry bytes. tar-stream 3 writes and reads PAX records as
// UTF-8 text, but an xattr value is bytes: security.capability and the POSIX ACLs are binary
// structs, and decoding them as UTF-8 corrupts them. Go's archive/tar (Docker, containerd) writes
// SCHILY.xattr.* values raw. So the two places where tar-stream turns records into text are
// replaced on each instance made here (Pack#_encodePax and Extract#_decodeLongHeader, checked to
// exist when the instance is made); everything else (ustar headers, GNU long names, streaming,
// padding) stays tar-stream's. The lockfile pins tar-stream 3.2.2; test/unit/layer-commit pins
// a binary value's round trip.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import tar from 'tar-stream';
import type { Extract, Header, Pack } from 'tar-stream';
import { decodeName, encodeName } from '../name-bytes.js';

const require = createRequire(import.meta.url);
interface UstarCodec {
  encode(h: Record<string, unknown>): Buffer | null;
}
// tar-stream's ustar header encoder (not exported by the package; loaded by its file path).
const ustar = require(join(dirname(require.resolve('tar-stream/package')), 'headers.js')) as UstarCodec;

/** A PAX record: key and value bytes (text values as UTF-8). */
export type PaxRecord = readonly [string, Buffer];
/** Decoded PAX records: xattr values (SCHILY.xattr.*) as bytes, all others as text. */
export type PaxValues = Record<string, string | Buffer>;

export const XATTR_RECORD = 'SCHILY.xattr.';

/** Headers as written here: the ustar fields plus the PAX records that go before them. */
export type LayerHeaders = Partial<Header> & { name: string; paxRecords?: readonly PaxRecord[] };

/** `"%d %s=%s\n"`, where %d counts the whole record, its own digits included. */
export function encodePaxRecord(key: string, value: Buffer): Buffer {
  const k = encodeName(key); // an xattr's name may hold any byte (name-bytes.ts)
  const rest = k.length + value.length + 3; // ' ', '=', '\n'
  let len = rest + String(rest).length;
  if (String(len).length !== String(rest).length) len = rest + String(len).length;
  return Buffer.concat([Buffer.from(`${len} `, 'latin1'), k, Buffer.from('='), value, Buffer.from('\n')]);
}

export function decodePaxRecords(buf: Buffer): PaxValues {
  const out: PaxValues = {};
  let off = 0;
  while (off < buf.length) {
    if (buf[off] === 0) break; // padding some writers leave
    const sp = buf.indexOf(0x20, off);
    const len = sp < 0 ? NaN : Number(buf.toString('latin1', off, sp));
    if (!Number.isSafeInteger(len) || len <= sp - off + 1 || off + len > buf.length || buf[off + len - 1] !== 0x0a) {
      throw new Error('malformed PAX header in the tar');
    }
    const eq = buf.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= off + len - 1) throw new Error('malformed PAX record in the tar');
    const key = decodeName(buf, sp + 1, eq);
    const value = buf.subarray(eq + 1, off + len - 1);
    // path and linkpath as raw bytes, as layerExtract reads every name until the header is whole.
    out[key] = key.startsWith(XATTR_RECORD) ? Buffer.from(value) : NAME_RECORDS.has(key) ? value.toString('latin1') : decodeName(value);
    off += len;
  }
  return out;
}

/** Could tar-stream put this name in the ustar fields (ASCII, and a split into prefix/name fits)? */
export function fitsUstarName(name: string): boolean {
  if (!/^[\x01-\x7f]*$/.test(name)) return false;
  let rest = name;
  let prefix = '';
  while (rest.length > 100) {
    const i = rest.indexOf('/');
    if (i < 0) return false;
    prefix += prefix ? `/${rest.slice(0, i)}` : rest.slice(0, i);
    rest = rest.slice(i + 1);
  }
  return prefix.length <= 155;
}

export function fitsUstarLink(link: string): boolean {
  return /^[\x01-\x7f]*$/.test(link) && link.length <= 100;
}

type PackInternals = Pack & {
  _encodePax(h: LayerHeaders): void;
  push(b: Buffer): boolean;
};

/** The name of a PAX header block: ustar-safe and derived from the entry (readers ignore it). */
function paxBlockName(name: string): string {
  const base = name.replace(/\/$/, '').split('/').pop() ?? '';
  return `PaxHeaders/${base.replace(/[^\x20-\x7e]/g, '_')}`.slice(0, 99);
}

/**
 * A tar-stream pack whose entries may carry `paxRecords` (set `pax: {}` too, which makes
 * tar-stream call the encoder below). The entry's own ustar header must be encodable: names and
 * link targets that do not fit go in `path` / `linkpath` records, with a placeholder in ustar.
 */
export function layerPack(): Pack {
  const pack = tar.pack() as PackInternals;
  if (typeof pack._encodePax !== 'function') throw new Error('tar-stream changed: Pack#_encodePax is gone (see src/layer/tar.ts)');
  pack._encodePax = function (this: PackInternals, header: LayerHeaders): void {
    const body = Buffer.concat((header.paxRecords ?? []).map(([k, v]) => encodePaxRecord(k, v)));
    const paxHeader = ustar.encode({
      name: paxBlockName(header.name), mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: new Date(0), type: 'pax-header',
    });
    const own = ustar.encode(header as Record<string, unknown>);
    if (paxHeader === null || own === null) throw new Error(`cannot encode the tar header of ${JSON.stringify(header.name)}`);
    this.push(paxHeader);
    this.push(body);
    if (body.length % 512 !== 0) this.push(Buffer.alloc(512 - (body.length % 512)));
    this.push(own);
  };
  return pack;
}

type ExtractInternals = Extract & {
  _decodeLongHeader(buf: Buffer): void;
  _applyLongHeaders(): void;
  _header: Header | { type: string };
  _pax: PaxValues | null;
  _paxGlobal: PaxValues | null;
};

const NAME_RECORDS = new Set(['path', 'linkpath']);

/**
 * A tar-stream extract whose entries' `header.pax` keep xattr values as bytes, and whose names
 * and link targets keep every byte (name-bytes.ts). tar-stream decodes names as UTF-8, and a name
 * with other bytes (GNU tar and Go's archive/tar write them as they are) would lose them: here
 * they are read as raw bytes (ustar fields, GNU long names, PAX path records), then decoded once
 * the entry's header is whole (Extract#_applyLongHeaders, replaced too).
 */
export function layerExtract(): Extract {
  // filenameEncoding is tar-stream's (extract.js), missing from its types.
  const ex = tar.extract({ filenameEncoding: 'latin1' } as Parameters<typeof tar.extract>[0]) as ExtractInternals;
  const original = ex._decodeLongHeader;
  const applyLong = ex._applyLongHeaders;
  if (typeof original !== 'function' || typeof applyLong !== 'function') {
    throw new Error('tar-stream changed: Extract#_decodeLongHeader or #_applyLongHeaders is gone (see src/layer/tar.ts)');
  }
  ex._applyLongHeaders = function (this: ExtractInternals): void {
    applyLong.call(this);
    const h = this._header as Header;
    h.name = decodeName(Buffer.from(h.name, 'latin1'));
    if (typeof h.linkname === 'string') h.linkname = decodeName(Buffer.from(h.linkname, 'latin1'));
  };
  ex._decodeLongHeader = function (this: ExtractInternals, buf: Buffer): void {
    if (this._header.type === 'pax-header') {
      const own = decodePaxRecords(buf);
      this._pax = this._paxGlobal === null ? own : { ...this._paxGlobal, ...own };
    } else if (this._header.type === 'pax-global-header') {
      this._paxGlobal = decodePaxRecords(buf);
    } else {
      original.call(this, buf);
    }
  };
  return ex;
}

/** The PAX values of an entry read by layerExtract(). */
export function paxOf(header: Header): PaxValues {
  return ((header as { pax?: PaxValues | null }).pax ?? {}) as PaxValues;
}
