// File names are bytes; JavaScript strings are UTF-16. A name that is valid UTF-8 (nearly all)
// becomes its text, exactly as Node decodes it. Any other byte (0x80-0xFF outside a valid UTF-8
// sequence) becomes the lone surrogate U+DC00 + byte, as Python's "surrogateescape" does (PEP
// 383), and goes back to that byte on the way out. So every name round-trips, from a branch or
// the kernel through layerfs and back, where Node alone would turn the byte into U+FFFD and the
// file could no longer be opened. Valid UTF-8 never yields a lone surrogate (it cannot encode
// one), so the escapes cannot be confused with text.
//
// Everything that takes a name from the host or the kernel decodes it here (decodeName); every
// path handed to the host or the kernel goes through hostPath/cPath/encodeName, which return the
// string itself, at the cost of one scan, when it holds no escape.
import { isUtf8 } from 'node:buffer';

const ESCAPE_BASE = 0xdc00;
/** Any unit in U+DC80-U+DCFF: nearly every name has none, and this test is the cheap one. */
const MAYBE_ESCAPED = /[\uDC80-\uDCFF]/;
/** A lone low surrogate in U+DC80-U+DCFF: an escaped byte (a surrogate pair's low half is preceded by its high half). */
const ESCAPED = /(?<![\uD800-\uDBFF])[\uDC80-\uDCFF]/;

/** Does s hold an escaped byte? */
export function hasEscapes(s: string): boolean {
  return MAYBE_ESCAPED.test(s) && ESCAPED.test(s);
}

/** The name in buf[start, end) as a string: its text, each byte that is not UTF-8 escaped. */
export function decodeName(buf: Buffer, start = 0, end = buf.length): string {
  const text = buf.toString('utf8', start, end);
  // U+FFFD comes out of invalid bytes, or from a name that holds U+FFFD itself (EF BF BD).
  if (!text.includes('\uFFFD') || isUtf8(buf.subarray(start, end))) return text;
  return decodeEscaping(buf, start, end);
}

function decodeEscaping(buf: Buffer, start: number, end: number): string {
  let out = '';
  let run = start; // start of the valid run not yet appended
  let i = start;
  while (i < end) {
    const n = validSequence(buf, i, end);
    if (n > 0) {
      i += n;
      continue;
    }
    out += buf.toString('utf8', run, i) + String.fromCharCode(ESCAPE_BASE + buf[i]!);
    i++;
    run = i;
  }
  return out + buf.toString('utf8', run, end);
}

/** Length of the valid UTF-8 sequence at buf[i] (RFC 3629: shortest form, no surrogates, <= U+10FFFF), or 0. */
function validSequence(buf: Buffer, i: number, end: number): number {
  const b0 = buf[i]!;
  if (b0 < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => i + k < end && buf[i + k]! >= lo && buf[i + k]! <= hi;
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(1) ? 2 : 0;
  if (b0 === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((b0 >= 0xe1 && b0 <= 0xec) || b0 === 0xee || b0 === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (b0 === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0; // U+D800-U+DFFF are not characters
  if (b0 === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b0 >= 0xf1 && b0 <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b0 === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

/** The bytes of a name or path (escapes back to their bytes). */
export function encodeName(s: string): Buffer {
  if (!hasEscapes(s)) return Buffer.from(s, 'utf8');
  const parts: Buffer[] = [];
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xdc80 || c > 0xdcff || (i > 0 && isHighSurrogate(s.charCodeAt(i - 1)))) continue;
    parts.push(Buffer.from(s.slice(run, i), 'utf8'), Buffer.of(c - ESCAPE_BASE));
    run = i + 1;
  }
  parts.push(Buffer.from(s.slice(run), 'utf8'));
  return Buffer.concat(parts);
}

const isHighSurrogate = (c: number): boolean => c >= 0xd800 && c <= 0xdbff;

/** What Node's fs takes for path p: p, or its bytes where it holds escapes. */
export function hostPath(s: string): string | Buffer {
  return hasEscapes(s) ? encodeName(s) : s;
}

/** What a C `const char *` takes through koffi: s, or its bytes and a NUL where it holds escapes. */
export function cPath(s: string): string | Buffer {
  return hasEscapes(s) ? Buffer.concat([encodeName(s), NUL]) : s;
}

const NUL = Buffer.of(0);

/** Bytes of s on the host (NAME_MAX and PATH_MAX count these). */
export function nameByteLength(s: string): number {
  return hasEscapes(s) ? encodeName(s).length : Buffer.byteLength(s);
}
