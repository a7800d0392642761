// Spot checks through two mounts of the same layer set (the kernel's overlayfs and the subject),
// beyond the snapshot comparison: `ls` output, reads at offsets, absent paths, invariants that must
// hold whatever the other side shows, and write attempts on a read-only mount.

import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { run, type Snapshot } from '../helpers/tree.js';

/** Decode ls --quoting-style=c: "..." with C escapes (octal bytes in LC_ALL=C). */
function unquoteC(s: string): string {
  if (!(s.startsWith('"') && s.endsWith('"'))) return s;
  const body = s.slice(1, -1);
  const bytes: number[] = [];
  const simple: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92, '"': 34, '?': 63, "'": 39 };
  const raw = Buffer.from(body, 'latin1');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as number;
    if (c !== 0x5c) { bytes.push(c); continue; }
    const next = String.fromCharCode(raw[i + 1] ?? 0);
    const oct = raw.subarray(i + 1, i + 4).toString('latin1');
    if (/^[0-7]{3}$/.test(oct)) { bytes.push(parseInt(oct, 8)); i += 3; continue; }
    const v = simple[next];
    bytes.push(v ?? next.charCodeAt(0));
    i += 1;
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The set of virtual paths `ls -AR1` shows under mnt (root included as "/"), plus its stderr. */
export async function lsPaths(mnt: string): Promise<{ paths: Set<string>; stderr: string; code: number | null }> {
  const r = await run('ls', ['-AR1', '--quoting-style=c', mnt], { env: { ...process.env, LC_ALL: 'C' }, timeoutMs: 240_000 });
  const paths = new Set<string>(['/']);
  let cur: string | undefined;
  const lines = r.stdout.toString('latin1').split('\n');
  for (const line of lines) {
    if (line === '') continue;
    if (line.startsWith('"') && line.endsWith('":')) {
      const p = unquoteC(line.slice(0, -1));
      cur = p === mnt ? '/' : p.startsWith(`${mnt}/`) ? p.slice(mnt.length) : undefined;
      if (cur === undefined) throw new Error(`ls printed a directory outside ${mnt}: ${p}`);
      continue;
    }
    if (cur === undefined) throw new Error(`unexpected ls output before a header: ${line}`);
    const name = unquoteC(line);
    paths.add(cur === '/' ? `/${name}` : `${cur}/${name}`);
  }
  return { paths, stderr: r.stderr, code: r.code };
}

/** Read len bytes at offset; returns hex of what came back, or the error code. */
export async function readAt(p: string, offset: number, len: number): Promise<string> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(p, 'r');
    const buf = Buffer.alloc(len);
    let got = 0;
    // Loop like a careful reader: a short read is not EOF unless it returned 0.
    while (got < len) {
      const { bytesRead } = await fh.read(buf, got, len - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    const b = buf.subarray(0, got);
    // Keep messages short: long all-zero runs are summarised.
    if (b.length > 64 && b.every((x) => x === 0)) return `${b.length} zero bytes`;
    if (b.length > 64) return `${b.length} bytes ${b.subarray(0, 8).toString('hex')}.. sha256=${createHash('sha256').update(b).digest('hex').slice(0, 16)}`;
    return `${b.length}:${b.toString('hex')}`;
  } catch (e) {
    return `error:${(e as NodeJS.ErrnoException).code ?? String(e)}`;
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

export async function errnoOf(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return 'ok';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

/** Invariants of any overlay view: no marker names, no whiteout devices, no overlay-private xattrs. */
export function invariantViolations(s: Snapshot): string[] {
  const out: string[] = [];
  for (const [v, n] of s.nodes) {
    const base = path.posix.basename(v);
    if (base.startsWith('.wh.')) out.push(`${v}: an OCI whiteout/opaque marker name is visible`);
    if (n.type === 'chardev' && n.rdev === '0:0') out.push(`${v}: a whiteout (char 0:0) is visible`);
    for (const k of Object.keys(n.xattrs ?? {})) {
      if (k.startsWith('trusted.overlay.')) out.push(`${v}: private xattr ${k} is visible`);
    }
  }
  return out;
}

export interface WriteAttempt {
  op: string;
  outcome: string;
}

/**
 * Try writes on a read-only mount; each outcome is "ok" or an errno code (setfattr: its exit status
 * and message). Destructive if the mount is wrongly writable: run last, on a throwaway layer set.
 */
export async function writeAttempts(mnt: string, s: Snapshot): Promise<WriteAttempt[]> {
  const file = [...s.nodes].find(([, n]) => n.type === 'file')?.[0];
  const dir = [...s.nodes].find(([v, n]) => n.type === 'dir' && v !== '/')?.[0];
  const sym = [...s.nodes].find(([, n]) => n.type === 'symlink')?.[0];
  const P = (v: string) => (v === '/' ? mnt : mnt + v);
  const out: WriteAttempt[] = [];
  const add = async (op: string, fn: () => Promise<unknown>) => out.push({ op, outcome: await errnoOf(fn) });
  const setfattr = async (args: string[]) => {
    const r = await run('setfattr', args, { env: { ...process.env, LC_ALL: 'C' }, timeoutMs: 60_000 });
    const msg = r.stderr.split(mnt).join('MNT').trim();
    return `exit ${r.code}${msg ? `: ${msg}` : ''}`;
  };

  await add('create /new-file (O_CREAT|O_EXCL)', async () => (await fsp.open(P('/new-file'), 'wx')).close());
  await add('mkdir /new-dir', () => fsp.mkdir(P('/new-dir')));
  await add('symlink /new-link', () => fsp.symlink('target', P('/new-link')));
  out.push({ op: 'mkfifo /new-fifo', outcome: await (async () => {
    const r = await run('mkfifo', [P('/new-fifo')], { env: { ...process.env, LC_ALL: 'C' }, timeoutMs: 60_000 });
    return `exit ${r.code}: ${r.stderr.split(mnt).join('MNT').trim()}`;
  })() });
  out.push({ op: 'setxattr user.new on /', outcome: await setfattr(['-n', 'user.new', '-v', '1', mnt]) });
  await add('chmod /', () => fsp.chmod(mnt, 0o700));
  await add('utimes /', () => fsp.utimes(mnt, new Date(0), new Date(0)));
  if (file !== undefined) {
    await add(`open r+ ${file}`, async () => (await fsp.open(P(file), 'r+')).close());
    await add(`open a ${file}`, async () => (await fsp.open(P(file), 'a')).close());
    await add(`truncate ${file}`, () => fsp.truncate(P(file), 0));
    await add(`chmod ${file}`, () => fsp.chmod(P(file), 0o604));
    await add(`chown ${file}`, () => fsp.chown(P(file), 4321, 4321));
    await add(`utimes ${file}`, () => fsp.utimes(P(file), new Date(1000), new Date(1000)));
    await add(`link ${file} -> /new-hardlink`, () => fsp.link(P(file), P('/new-hardlink')));
    await add(`rename ${file} -> /renamed`, () => fsp.rename(P(file), P('/renamed')));
    out.push({ op: `setxattr user.new on ${file}`, outcome: await setfattr(['-n', 'user.new', '-v', '1', P(file)]) });
    out.push({ op: `removexattr user.absent on ${file}`, outcome: await setfattr(['-x', 'user.absent', P(file)]) });
    await add(`open w ${file} (O_TRUNC)`, async () => (await fsp.open(P(file), 'w')).close());
    await add(`unlink ${file}`, () => fsp.unlink(P(file)));
  }
  if (dir !== undefined) {
    await add(`mkdir ${dir}/sub-new`, () => fsp.mkdir(P(`${dir}/sub-new`)));
    await add(`create ${dir}/new`, async () => (await fsp.open(P(`${dir}/new`), 'wx')).close());
    await add(`rmdir ${dir}`, () => fsp.rmdir(P(dir)));
    await add(`rename ${dir} -> /renamed-dir`, () => fsp.rename(P(dir), P('/renamed-dir')));
  }
  if (sym !== undefined) {
    await add(`unlink ${sym}`, () => fsp.unlink(P(sym)));
    await add(`lchown ${sym}`, () => fsp.lchown(P(sym), 7, 7));
  }
  return out;
}

/**
 * Reads that must fail, with the errno the kernel gives (compared with the subject's): readlink of a
 * non-symlink, readdir of a file, read(2) on a directory, a path through a file, a name longer than
 * NAME_MAX, getxattr of an absent name, open(O_DIRECTORY) of a file.
 */
export async function readErrors(mnt: string, s: Snapshot): Promise<WriteAttempt[]> {
  const file = [...s.nodes].find(([, n]) => n.type === 'file')?.[0];
  const dir = [...s.nodes].find(([v, n]) => n.type === 'dir' && v !== '/')?.[0] ?? '/';
  const P = (v: string) => (v === '/' ? mnt : mnt + v);
  const out: WriteAttempt[] = [];
  const add = async (op: string, fn: () => Promise<unknown>) => out.push({ op, outcome: await errnoOf(fn) });
  const getfattr = async (args: string[]) => {
    const r = await run('getfattr', args, { env: { ...process.env, LC_ALL: 'C' }, timeoutMs: 60_000 });
    return `exit ${r.code}: ${r.stderr.split(mnt).join('MNT').trim()}`;
  };
  await add(`readlink ${dir}`, () => fsp.readlink(P(dir)));
  await add(`read(2) on ${dir}`, async () => {
    const fh = await fsp.open(P(dir), 'r');
    try { await fh.read(Buffer.alloc(10), 0, 10, 0); } finally { await fh.close(); }
  });
  await add('lstat of a 256-byte name', () => fsp.lstat(P(`/${'n'.repeat(256)}`)));
  await add('lstat of a missing name', () => fsp.lstat(P('/definitely-missing')));
  out.push({ op: `getxattr user.absent on ${dir}`, outcome: await getfattr(['-n', 'user.absent', P(dir)]) });
  if (file !== undefined) {
    await add(`readlink ${file}`, () => fsp.readlink(P(file)));
    await add(`readdir ${file}`, () => fsp.readdir(P(file)));
    await add(`lstat ${file}/child`, () => fsp.lstat(P(`${file}/child`)));
    await add(`open O_DIRECTORY ${file}`, async () => (await fsp.open(P(file), fsConstants.O_RDONLY | fsConstants.O_DIRECTORY)).close());
    out.push({ op: `getxattr user.absent on ${file}`, outcome: await getfattr(['-n', 'user.absent', P(file)]) });
  }
  return out;
}
