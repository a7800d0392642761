// src/path.ts: branding of mount paths and the helpers that take them apart.
import test from 'ava';
import { NAME_MAX, ROOT, baseName, childOf, components, isName, parentOf, vpath, type Name } from '../../src/path.js';

test('vpath accepts "/" and absolute normalised paths unchanged', (t) => {
  t.is<string, string>(vpath('/'), ROOT);
  t.is<string, string>(ROOT, '/');
  for (const p of ['/a', '/a/b', '/a b/c', '/.hidden', '/...', '/a/..b', '/ü/€', '/x'.repeat(100)]) {
    t.is<string, string>(vpath(p), p);
  }
});

test('vpath rejects anything that is not an absolute normalised path', (t) => {
  for (const p of ['', 'a', 'a/b', '/a/', '//', '//a', '/a//b', '/.', '/..', '/a/.', '/a/..', '/a/./b', '/a/../b', '/a\0b', '\0']) {
    const e = t.throws(() => vpath(p), { instanceOf: TypeError }, JSON.stringify(p));
    t.true(e?.message.includes(JSON.stringify(p)) ?? false, `message names ${JSON.stringify(p)}`);
  }
});

test('isName accepts one component and nothing else', (t) => {
  for (const s of ['a', '.a', '..a', 'a.', '...', ' ', '.wh.x', 'x'.repeat(NAME_MAX)]) t.true(isName(s), s);
  for (const s of ['', '.', '..', 'a/b', '/', 'a\0', '\0']) t.false(isName(s), JSON.stringify(s));
  t.is(NAME_MAX, 255);
});

test('parentOf, baseName and childOf take a path apart and put it back together', (t) => {
  t.is<string, string>(parentOf(ROOT), ROOT);
  t.is<string, string>(parentOf(vpath('/a')), ROOT);
  t.is<string, string>(parentOf(vpath('/a/b')), '/a');
  t.is<string, string>(parentOf(vpath('/a/b/c')), '/a/b');
  t.is<string, string>(baseName(vpath('/a')), 'a');
  t.is<string, string>(baseName(vpath('/a/b/c')), 'c');
  t.is<string, string>(childOf(ROOT, 'a' as Name), '/a');
  t.is<string, string>(childOf(vpath('/a/b'), 'c' as Name), '/a/b/c');
  for (const p of ['/a', '/a/b', '/a/b/c', '/.x/..y/...']) {
    const v = vpath(p);
    t.is<string, string>(childOf(parentOf(v), baseName(v)), p, p);
    // What childOf builds is itself a valid mount path.
    t.is<string, string>(vpath(childOf(v, 'n' as Name)), `${p}/n`);
  }
});

test('components lists the names outermost first, none for the root', (t) => {
  t.deepEqual(components(ROOT), []);
  t.deepEqual(components(vpath('/a')), ['a']);
  t.deepEqual(components(vpath('/a/b/c')), ['a', 'b', 'c']);
  t.deepEqual(components(vpath('/.wh.x/y')), ['.wh.x', 'y']);
});
