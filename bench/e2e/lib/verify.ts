/**
 * Correctness checks run before timing: every variant must show the same tree as the plain
 * flattened copy (names, types, modes, owners, file sizes, symlink targets) and the same bytes
 * for a sample of files.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** One line per entry: "<type> <mode> <uid>:<gid> <size|-> <relpath>[ -> target]", sorted. */
export function listTree(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const abs = rel === '' ? root : path.join(root, rel);
    for (const d of fs.readdirSync(abs, { withFileTypes: true })) {
      const r = rel === '' ? d.name : `${rel}/${d.name}`;
      const st = fs.lstatSync(path.join(root, r));
      const mode = (st.mode & 0o7777).toString(8);
      const own = `${st.uid}:${st.gid}`;
      if (st.isDirectory()) {
        out.push(`d ${mode} ${own} - ${r}`);
        walk(r);
      } else if (st.isFile()) out.push(`f ${mode} ${own} ${st.size} ${r}`);
      else if (st.isSymbolicLink()) out.push(`l ${mode} ${own} ${st.size} ${r} -> ${fs.readlinkSync(path.join(root, r))}`);
      else if (st.isCharacterDevice()) out.push(`c ${mode} ${own} ${st.rdev} ${r}`);
      else out.push(`? ${mode} ${own} - ${r}`);
    }
  };
  walk('');
  return out.sort();
}

export interface TreeDiff {
  same: boolean;
  expected: number;
  actual: number;
  missing: string[];
  extra: string[];
}

export function diffTrees(expected: readonly string[], actual: readonly string[], keep = 5): TreeDiff {
  const a = new Set(actual);
  const e = new Set(expected);
  const missing = expected.filter((x) => !a.has(x));
  const extra = actual.filter((x) => !e.has(x));
  return {
    same: missing.length === 0 && extra.length === 0,
    expected: expected.length,
    actual: actual.length,
    missing: missing.slice(0, keep),
    extra: extra.slice(0, keep),
  };
}

/** Compares file contents under two roots; returns the relative paths that differ. */
export function diffContents(expectedRoot: string, actualRoot: string, rels: readonly string[], bigRel?: string): string[] {
  const bad: string[] = [];
  for (const rel of rels) {
    try {
      const a = fs.readFileSync(path.join(expectedRoot, rel));
      const b = fs.readFileSync(path.join(actualRoot, rel));
      if (!a.equals(b)) bad.push(rel);
    } catch (err) {
      bad.push(`${rel} (${(err as Error).message})`);
    }
  }
  if (bigRel !== undefined) {
    // Big file: compare the first and last MiB and a block in the middle.
    const chunk = 1024 * 1024;
    try {
      const fa = fs.openSync(path.join(expectedRoot, bigRel), 'r');
      const fb = fs.openSync(path.join(actualRoot, bigRel), 'r');
      try {
        const size = fs.fstatSync(fa).size;
        for (const pos of [0, Math.max(0, Math.floor(size / 2) - 12345), Math.max(0, size - chunk)]) {
          const ba = Buffer.alloc(chunk);
          const bb = Buffer.alloc(chunk);
          const na = fs.readSync(fa, ba, 0, chunk, pos);
          const nb = fs.readSync(fb, bb, 0, chunk, pos);
          if (na !== nb || !ba.subarray(0, na).equals(bb.subarray(0, nb))) {
            bad.push(`${bigRel} @${pos}`);
            break;
          }
        }
      } finally {
        fs.closeSync(fa);
        fs.closeSync(fb);
      }
    } catch (err) {
      bad.push(`${bigRel} (${(err as Error).message})`);
    }
  }
  return bad;
}

/**
 * State of some paths after a writable workload, one line per entry, sorted: a directory as
 * its whole subtree (listTree lines, prefixed with the path), a file with its size and, with
 * `hash`, a digest of its bytes; a missing path as "absent PATH".
 */
export function snapshotPaths(root: string, rels: readonly string[], hash: boolean): string[] {
  const out: string[] = [];
  const digest = (abs: string): string => createHash('sha1').update(fs.readFileSync(abs)).digest('hex').slice(0, 16);
  for (const rel of rels) {
    const abs = path.join(root, rel);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch {
      out.push(`absent ${rel}`);
      continue;
    }
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isDirectory()) {
      out.push(`d ${mode} ${st.uid}:${st.gid} - ${rel}`);
      for (const line of listTree(abs)) {
        // "<type> <mode> <own> <size> <relpath>...": put `rel/` in front of the path.
        const m = /^(\S+ \S+ \S+ \S+ )(.*)$/.exec(line);
        if (!m) continue;
        const sub = `${rel}/${m[2] as string}`;
        const isFile = line.startsWith('f ');
        out.push(`${m[1] as string}${sub}${hash && isFile ? ` #${digest(path.join(root, sub.replace(/ -> .*$/, '')))}` : ''}`);
      }
    } else if (st.isFile()) out.push(`f ${mode} ${st.uid}:${st.gid} ${st.size} ${rel}${hash ? ` #${digest(abs)}` : ''}`);
    else out.push(`? ${mode} ${st.uid}:${st.gid} - ${rel}`);
  }
  return out.sort();
}
