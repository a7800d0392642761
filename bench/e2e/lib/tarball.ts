/**
 * A deterministic, source-tree-like tarball for the untar workload: many small text files
 * (C-like code, headers, build files, docs) in a few levels of directories, fixed mtime and
 * owner, so the same seed and size always give the same bytes.
 */
import * as fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { Rng } from './rng.js';

export interface TarballStats {
  path: string;
  root: string;
  files: number;
  dirs: number;
  /** Sum of the file sizes (the tar file itself is larger: headers and padding). */
  contentBytes: number;
  tarBytes: number;
}

const WORDS = [
  'buf', 'len', 'ctx', 'node', 'list', 'head', 'tail', 'next', 'prev', 'key', 'val', 'hash', 'map', 'tree',
  'page', 'inode', 'dentry', 'file', 'path', 'name', 'flags', 'mode', 'size', 'count', 'index', 'offset',
  'lock', 'state', 'init', 'free', 'alloc', 'read', 'write', 'open', 'close', 'parse', 'emit', 'scan',
  'token', 'entry', 'table', 'cache', 'queue', 'timer', 'event', 'error', 'status', 'result', 'config',
];
const TYPES = ['int', 'long', 'size_t', 'unsigned int', 'char *', 'const char *', 'void *', 'bool', 'uint32_t', 'uint64_t'];
const EXTS: ReadonlyArray<readonly [string, number]> = [
  ['.c', 40], ['.h', 25], ['.py', 6], ['.md', 4], ['.txt', 3], ['.sh', 3], ['.json', 3], ['Makefile', 2], ['.rst', 2],
];
const EPOCH = new Date('2024-01-01T00:00:00Z');

function ident(rng: Rng): string {
  const n = rng.int(1, 3);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(rng.pick(WORDS));
  return parts.join('_');
}

/** One source-like line (without the newline). */
function codeLine(rng: Rng, depth: number): string {
  const indent = '\t'.repeat(depth);
  const r = rng.float();
  if (r < 0.12) return '';
  if (r < 0.22) return `${indent}/* ${ident(rng).replace(/_/g, ' ')} of the ${rng.pick(WORDS)} ${rng.pick(WORDS)} */`;
  if (r < 0.4) return `${indent}${rng.pick(TYPES)} ${ident(rng)} = ${ident(rng)}(${ident(rng)}, ${rng.int(0, 4096)});`;
  if (r < 0.55) return `${indent}if (${ident(rng)}->${rng.pick(WORDS)} ${rng.pick(['==', '!=', '<', '>='])} ${rng.int(0, 255)})`;
  if (r < 0.65) return `${indent}return ${rng.chance(0.5) ? `-E${rng.pick(['INVAL', 'NOMEM', 'NOENT', 'IO', 'AGAIN'])}` : ident(rng)};`;
  if (r < 0.8) return `${indent}${ident(rng)}(${ident(rng)}, ${ident(rng)}->${rng.pick(WORDS)});`;
  return `${indent}${ident(rng)}->${rng.pick(WORDS)} ${rng.pick(['=', '+=', '|=', '&='])} ${ident(rng)};`;
}

function fileText(rng: Rng, size: number, name: string): string {
  const first = `/* ${name}: generated for the layerfs benchmark */`;
  const lines: string[] = [first, ''];
  let bytes = first.length + 2;
  let depth = 0;
  while (bytes < size) {
    let line: string;
    if (depth === 0) {
      line = `static ${rng.pick(TYPES)} ${ident(rng)}(${rng.pick(TYPES)} ${rng.pick(WORDS)}, ${rng.pick(TYPES)} ${rng.pick(WORDS)})\n{`;
      depth = 1;
    } else if (depth > 1 && rng.chance(0.2)) {
      depth--;
      line = `${'\t'.repeat(depth)}}`;
    } else if (depth < 4 && rng.chance(0.1)) {
      line = `${'\t'.repeat(depth)}for (${rng.pick(WORDS)} = 0; ${rng.pick(WORDS)} < ${rng.int(2, 64)}; ${rng.pick(WORDS)}++) {`;
      depth++;
    } else if (depth === 1 && rng.chance(0.06)) {
      line = '}\n';
      depth = 0;
    } else line = codeLine(rng, depth);
    lines.push(line);
    bytes += line.length + 1;
  }
  return `${lines.join('\n')}\n`;
}

function fileSize(rng: Rng): number {
  // Source files: mostly a few KiB, a long tail up to ~120 KiB.
  return Math.max(64, Math.round(Math.exp(8.6 + 1.0 * rng.normal())));
}

/**
 * Writes `out`, a tar (uncompressed: the workload measures the file system, not gunzip) of
 * about `targetBytes` of file content under one top directory `root`.
 */
export async function writeSourceTarball(out: string, targetBytes: number, seed: number, root = 'bench-src-1.0'): Promise<TarballStats> {
  const rng = new Rng(seed ^ 0x7a2b);
  const pack = tar.pack();
  const done = pipeline(pack, fs.createWriteStream(out));
  const stats: TarballStats = { path: out, root, files: 0, dirs: 0, contentBytes: 0, tarBytes: 0 };
  const dirs: string[] = [root];
  const header = { uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: EPOCH };
  const addDir = (d: string): void => {
    pack.entry({ ...header, name: `${d}/`, type: 'directory', mode: 0o755 });
    stats.dirs++;
  };
  addDir(root);
  for (const top of ['src', 'include', 'lib', 'tools', 'tests', 'docs', 'scripts']) {
    dirs.push(`${root}/${top}`);
    addDir(`${root}/${top}`);
  }
  const extWeights = EXTS.map(([, w]) => w);
  const totalW = extWeights.reduce((a, b) => a + b, 0);
  const pickExt = (): string => {
    let x = rng.float() * totalW;
    for (const [e, w] of EXTS) {
      if ((x -= w) < 0) return e;
    }
    return '.c';
  };
  const used = new Set<string>();
  while (stats.contentBytes < targetBytes) {
    // New directories now and then, nested under existing ones (depth at most 6).
    if (rng.chance(0.06)) {
      const parent = rng.pick(dirs);
      if (parent.split('/').length < 6) {
        const d = `${parent}/${ident(rng)}`;
        if (!used.has(d)) {
          used.add(d);
          dirs.push(d);
          addDir(d);
        }
      }
      continue;
    }
    const dir = rng.pick(dirs);
    const ext = pickExt();
    const name = ext === 'Makefile' ? 'Makefile' : `${ident(rng)}${ext}`;
    const p = `${dir}/${name}`;
    if (used.has(p)) continue;
    used.add(p);
    const body = Buffer.from(fileText(rng, fileSize(rng), name), 'utf8');
    pack.entry({ ...header, name: p, type: 'file', mode: ext === '.sh' ? 0o755 : 0o644, size: body.length }, body);
    stats.files++;
    stats.contentBytes += body.length;
  }
  pack.finalize();
  await done;
  stats.tarBytes = fs.statSync(out).size;
  return stats;
}
