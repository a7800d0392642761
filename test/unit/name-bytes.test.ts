// src/name-bytes.ts: file names as bytes, in strings. Valid UTF-8 decodes as Node decodes it;
// other bytes are escaped (U+DC80-U+DCFF) and every name goes back to its own bytes.
import test from 'ava';
import { cPath, decodeName, encodeName, hasEscapes, hostPath, nameByteLength } from '../../src/name-bytes.js';

const hex = (b: Buffer): string => b.toString('hex');

test('valid UTF-8 decodes as Node decodes it, with no escape, and encodes back as Node encodes it', (t) => {
  for (const s of ['plain', 'héllo wörld', '日本/ファイル', 'emoji 😀', '\u{10080}', 'a\uFFFDb', '', 'x'.repeat(300)]) {
    const b = Buffer.from(s, 'utf8');
    t.is(decodeName(b), s);
    t.false(hasEscapes(s), s);
    t.is(hex(encodeName(s)), hex(b));
    t.is(hostPath(s), s);
    t.is(cPath(s), s);
    t.is(nameByteLength(s), b.length);
  }
});

test('bytes that are not UTF-8 become escapes and go back to the same bytes', (t) => {
  const cases = [
    'ff', 'c3', 'e9', '80', 'c0af', 'e0808f', 'eda080', 'edbfbf', 'f4908080', 'f5', 'fe',
    '61ff62', 'c3a9ff', 'ffc3a9', 'e282', 'e282ac', 'f09f98', 'f09f9880ff', '68e96c6c6f', // "h\xe9llo" (latin-1)
  ];
  for (const h of cases) {
    const b = Buffer.from(h, 'hex');
    const s = decodeName(b);
    t.is(hex(encodeName(s)), h, h);
    t.is(nameByteLength(s), b.length, h);
    t.is(s.includes('\uFFFD'), false, `${h}: no replacement character`);
  }
  t.is(decodeName(Buffer.from('68e96c6c6f', 'hex')), 'h\uDCE9llo');
  t.is(decodeName(Buffer.from('e282ac', 'hex')), '€');
  t.true(hasEscapes('h\uDCE9llo'));
  const p = hostPath('/x/h\uDCE9llo');
  t.true(Buffer.isBuffer(p));
  t.is(hex(p as Buffer), hex(Buffer.from('/x/h\xe9llo', 'latin1')));
  t.is(hex(cPath('h\uDCE9') as Buffer), '68e900');
});

test('every byte string round-trips, and its decoding is Node\'s wherever Node\'s is exact', (t) => {
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  for (let i = 0; i < 5000; i++) {
    const len = rnd(12);
    // Mostly high bytes, with some ASCII and some well-formed sequences in between.
    const parts: number[] = [];
    for (let j = 0; j < len; j++) {
      const k = rnd(4);
      if (k === 0) parts.push(0x61 + rnd(26));
      else if (k === 1) parts.push(...Buffer.from(String.fromCodePoint(0x80 + rnd(0x10000 - 0x80 - 0x800)), 'utf8'));
      else parts.push(0x80 + rnd(0x80));
    }
    const b = Buffer.from(parts.filter((x) => x !== 0));
    const s = decodeName(b);
    t.is(hex(encodeName(s)), hex(b));
    const node = b.toString('utf8');
    if (!node.includes('\uFFFD')) t.is(s, node);
  }
});

test('a part in a buffer decodes alone', (t) => {
  const b = Buffer.from('00ff61e90000', 'hex');
  t.is(decodeName(b, 1, 4), '\uDCFFa\uDCE9');
});
