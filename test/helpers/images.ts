// Builds real image archives for the image tests, with tar-stream: layer tars from entry specs,
// then a `docker save` archive (the layout of Docker 25+ with blobs/ and index.json, or the older
// one with <id>/layer.tar) or an OCI image layout (a directory, or a tar of it), optionally with
// gzip or zstd layers, several platforms, and deliberate corruption.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';

export type TarSpecEntry =
  | { type: 'file'; path: string; content?: string | Buffer; mode?: number; uid?: number; gid?: number; mtime?: number }
  | { type: 'dir'; path: string; mode?: number; uid?: number; gid?: number; mtime?: number }
  | { type: 'symlink'; path: string; target: string; mtime?: number }
  | { type: 'hardlink'; path: string; target: string }
  | { type: 'fifo'; path: string; mode?: number; mtime?: number }
  /** `.wh.<name>` next to path: deletes path from the layers below. */
  | { type: 'whiteout'; path: string }
  /** `<path>/.wh..wh..opq`: hides everything below in path (path itself is listed separately). */
  | { type: 'opaque'; path: string };

export type LayerSpec = TarSpecEntry[];

/** Default mtime of entries: whole seconds (what a plain ustar header holds). */
export const DEFAULT_MTIME = Date.UTC(2022, 5, 1, 12, 0, 0);

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const hexOf = (d: string): string => d.slice('sha256:'.length);

/**
 * A layer tar (uncompressed) from entries, in the given order. Every parent directory of an entry
 * that the spec does not list gets an entry (0755, root, DEFAULT_MTIME) before it, as in the layers
 * Docker and buildkit write (a layer without them would make the union show implied directories
 * that no flattening produces).
 */
export async function layerTar(entries: readonly TarSpecEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => void chunks.push(c as Buffer));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  const add = (h: Parameters<typeof pack.entry>[0], body?: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      pack.entry(h, body ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    });
  const explicit = new Set(entries.filter((e) => e.type === 'dir').map((e) => e.path.replace(/\/$/, '')));
  const made = new Set<string>();
  for (const e of entries) {
    const parent = e.type === 'opaque' ? e.path : path.posix.dirname(e.path);
    const parts = parent === '.' ? [] : parent.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (made.has(d) || explicit.has(d)) continue;
      made.add(d);
      await add({ name: `${d}/`, type: 'directory', mode: 0o755, mtime: new Date(DEFAULT_MTIME) });
    }
    const mtime = new Date('mtime' in e && e.mtime !== undefined ? e.mtime : DEFAULT_MTIME);
    switch (e.type) {
      case 'file': {
        const body = typeof e.content === 'string' ? Buffer.from(e.content) : (e.content ?? Buffer.alloc(0));
        await add({ name: e.path, type: 'file', mode: e.mode ?? 0o644, uid: e.uid ?? 0, gid: e.gid ?? 0, mtime, size: body.length }, body);
        break;
      }
      case 'dir':
        await add({ name: `${e.path.replace(/\/$/, '')}/`, type: 'directory', mode: e.mode ?? 0o755, uid: e.uid ?? 0, gid: e.gid ?? 0, mtime });
        break;
      case 'symlink':
        await add({ name: e.path, type: 'symlink', linkname: e.target, mode: 0o777, mtime });
        break;
      case 'hardlink':
        await add({ name: e.path, type: 'link', linkname: e.target, mode: 0o644, mtime });
        break;
      case 'fifo':
        await add({ name: e.path, type: 'fifo', mode: e.mode ?? 0o644, mtime });
        break;
      case 'whiteout':
        await add({ name: path.posix.join(path.posix.dirname(e.path), `.wh.${path.posix.basename(e.path)}`), type: 'file', mode: 0o600, mtime, size: 0 });
        break;
      case 'opaque':
        await add({ name: path.posix.join(e.path, '.wh..wh..opq'), type: 'file', mode: 0o600, mtime, size: 0 });
        break;
    }
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export interface FileMap {
  [name: string]: Buffer;
}

/** Write a tar of these files (parents as directory entries), in the order given. */
export async function writeTar(file: string, files: FileMap | [string, Buffer | { symlink: string }][]): Promise<void> {
  const pack = tar.pack();
  const out = fs.createWriteStream(file);
  const finished = new Promise<void>((resolve, reject) => {
    out.on('close', () => resolve());
    out.on('error', reject);
    pack.on('error', reject);
  });
  pack.pipe(out);
  const dirs = new Set<string>();
  const list = Array.isArray(files) ? files : Object.entries(files);
  for (const [name, data] of list) {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (dirs.has(d)) continue;
      dirs.add(d);
      pack.entry({ name: `${d}/`, type: 'directory', mode: 0o755, mtime: new Date(DEFAULT_MTIME) });
    }
    if (Buffer.isBuffer(data)) {
      await new Promise<void>((resolve, reject) => pack.entry({ name, size: data.length, mode: 0o644, mtime: new Date(DEFAULT_MTIME) }, data, (e) => (e ? reject(e) : resolve())));
    } else {
      pack.entry({ name, type: 'symlink', linkname: data.symlink, mode: 0o777, mtime: new Date(DEFAULT_MTIME) });
    }
  }
  pack.finalize();
  await finished;
}

/** zstd-compressed bytes, by Debian's `zstd` (Node 20 has no zstd compressor). */
export function zstdSync(data: Buffer): Buffer {
  const r = spawnSync('zstd', ['-q', '-c'], { input: data, maxBuffer: 1 << 30 });
  if (r.error !== undefined || r.status !== 0) throw new Error(`zstd failed (${r.error?.message ?? r.stderr.toString().trim()}): install Debian's zstd`);
  return r.stdout;
}

export interface BuiltImageLayer {
  /** The uncompressed tar. */
  tar: Buffer;
  /** The bytes stored in the image (gzip or not). */
  blob: Buffer;
  diffId: string;
  digest: string;
}

export interface ImageOptions {
  /** Layers bottom first. */
  layers: LayerSpec[];
  tags?: string[];
  /** OCI: gzip these layers (indexes, bottom first); true for all. */
  gzip?: boolean | number[];
  /** OCI: compress these layers with zstd (Debian's `zstd`); true for all. */
  zstd?: boolean | number[];
  platform?: { os: string; architecture: string; variant?: string };
  /** Flip a byte in the middle of this layer's stored blob (after the digests were computed). */
  corruptBlob?: number;
  /** Give this layer a wrong diff_id in the config (its blob digest stays right). */
  wrongDiffId?: number;
}

export interface BuiltImage {
  layers: BuiltImageLayer[];
  configDigest: string;
  config: Buffer;
}

export async function buildLayers(o: ImageOptions): Promise<BuiltImage> {
  const layers: BuiltImageLayer[] = [];
  for (const [i, spec] of o.layers.entries()) {
    const t = await layerTar(spec);
    const gz = o.gzip === true || (Array.isArray(o.gzip) && o.gzip.includes(i));
    const zst = o.zstd === true || (Array.isArray(o.zstd) && o.zstd.includes(i));
    const blob = gz ? gzipSync(t) : zst ? zstdSync(t) : t;
    layers.push({ tar: t, blob, diffId: sha(t), digest: sha(blob) });
  }
  const diffIds = layers.map((l, i) => (i === o.wrongDiffId ? sha(Buffer.from(`not layer ${i}`)) : l.diffId));
  const p = o.platform ?? { os: 'linux', architecture: 'amd64' };
  const config = Buffer.from(JSON.stringify({
    architecture: p.architecture, os: p.os, ...(p.variant ? { variant: p.variant } : {}),
    config: { Env: ['PATH=/usr/bin:/bin'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: layers.map((_, i) => ({ created_by: `layer ${i}` })),
  }));
  if (o.corruptBlob !== undefined) {
    const l = layers[o.corruptBlob]!;
    const b = Buffer.from(l.blob);
    const at = Math.floor(b.length / 2);
    b[at] = b[at]! ^ 0xff;
    l.blob = b;
  }
  return { layers, configDigest: sha(config), config };
}

/** `docker save` as Docker 25+ writes it: blobs/sha256, index.json, manifest.json, oci-layout, repositories. */
export async function dockerSaveFiles(o: ImageOptions, style: 'modern' | 'legacy' = 'modern'): Promise<{ files: [string, Buffer | { symlink: string }][]; image: BuiltImage }> {
  const image = await buildLayers(o);
  const tags = o.tags ?? ['example/app:1.0'];
  const files: [string, Buffer | { symlink: string }][] = [];
  const layerPaths: string[] = [];
  if (style === 'modern') {
    const seen = new Set<string>();
    for (const l of image.layers) {
      const p = `blobs/sha256/${hexOf(l.digest)}`;
      layerPaths.push(p);
      if (!seen.has(p)) files.push([p, l.blob]);
      seen.add(p);
    }
    files.push([`blobs/sha256/${hexOf(image.configDigest)}`, image.config]);
  } else {
    // Older Docker: one directory per layer (named by a v1 id, not a digest); a layer already
    // written is a symlink to the first copy.
    const first = new Map<string, string>();
    for (const [i, l] of image.layers.entries()) {
      const id = createHash('sha256').update(`v1 ${i} ${l.diffId}`).digest('hex');
      const p = `${id}/layer.tar`;
      layerPaths.push(p);
      const prev = first.get(l.diffId);
      if (prev !== undefined) files.push([p, { symlink: `../${prev}` }]);
      else {
        files.push([p, l.blob]);
        first.set(l.diffId, p);
      }
      files.push([`${id}/VERSION`, Buffer.from('1.0')]);
    }
    files.push([`${hexOf(image.configDigest)}.json`, image.config]);
  }
  const configPath = style === 'modern' ? `blobs/sha256/${hexOf(image.configDigest)}` : `${hexOf(image.configDigest)}.json`;
  files.push(['manifest.json', Buffer.from(JSON.stringify([{ Config: configPath, RepoTags: tags, Layers: layerPaths }]))]);
  if (style === 'modern') {
    files.push(['oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}')]);
    // index.json as Docker writes it; it points at an OCI manifest that this helper does not
    // write, which is fine: manifest.json is what is read when both are there.
    files.push(['index.json', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }))]);
  }
  files.push(['repositories', Buffer.from(JSON.stringify({}))]);
  return { files, image };
}

export async function writeDockerSave(file: string, o: ImageOptions, style: 'modern' | 'legacy' = 'modern'): Promise<BuiltImage> {
  const { files, image } = await dockerSaveFiles(o, style);
  await writeTar(file, files);
  return image;
}

/** A `docker save a b`: the images' files, one manifest.json listing them all; their config digests. */
export async function writeDockerSaveOf(file: string, images: ImageOptions[]): Promise<string[]> {
  const files = new Map<string, Buffer | { symlink: string }>();
  const manifest: unknown[] = [];
  const ids: string[] = [];
  for (const o of images) {
    const { files: fs1, image } = await dockerSaveFiles(o);
    ids.push(image.configDigest);
    for (const [name, data] of fs1) {
      if (name === 'manifest.json') manifest.push(...(JSON.parse((data as Buffer).toString()) as unknown[]));
      else files.set(name, data);
    }
  }
  files.set('manifest.json', Buffer.from(JSON.stringify(manifest)));
  await writeTar(file, [...files]);
  return ids;
}

function descriptor(mediaType: string, data: Buffer, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { mediaType, digest: sha(data), size: data.length, ...extra };
}

const LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';

/** The files of an OCI image layout holding one image per options object (several: an index per platform). */
export async function ociFiles(images: ImageOptions[], opts: { nested?: boolean; tag?: string } = {}): Promise<{ files: [string, Buffer][]; built: BuiltImage[] }> {
  const files: [string, Buffer][] = [['oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}')]];
  const blobs = new Map<string, Buffer>();
  const addBlob = (b: Buffer): void => void blobs.set(hexOf(sha(b)), b);
  const built: BuiltImage[] = [];
  const manifestDescs: Record<string, unknown>[] = [];
  for (const o of images) {
    const image = await buildLayers(o);
    built.push(image);
    addBlob(image.config);
    const layerDescs = image.layers.map((l) => {
      const gz = l.blob[0] === 0x1f && l.blob[1] === 0x8b;
      const zst = l.blob.length >= 4 && l.blob.readUInt32LE(0) === 0xfd2fb528;
      blobs.set(hexOf(l.digest), l.blob); // the digest as computed before any corruption
      return { mediaType: gz ? `${LAYER_TAR}+gzip` : zst ? `${LAYER_TAR}+zstd` : LAYER_TAR, digest: l.digest, size: l.blob.length };
    });
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: descriptor('application/vnd.oci.image.config.v1+json', image.config),
      layers: layerDescs,
    }));
    addBlob(manifest);
    const p = o.platform ?? { os: 'linux', architecture: 'amd64' };
    manifestDescs.push(descriptor('application/vnd.oci.image.manifest.v1+json', manifest, { platform: p }));
  }
  const tag = opts.tag ?? 'example/app:1.0';
  const annotations = { 'io.containerd.image.name': tag, 'org.opencontainers.image.ref.name': tag.replace(/^.*:/, '') };
  let top: Record<string, unknown>[];
  if (opts.nested) {
    const inner = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: manifestDescs }));
    addBlob(inner);
    top = [descriptor('application/vnd.oci.image.index.v1+json', inner, { annotations })];
  } else {
    top = manifestDescs.map((d) => ({ ...d, annotations }));
  }
  files.push(['index.json', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: top }))]);
  for (const [hex, b] of blobs) files.push([`blobs/sha256/${hex}`, b]);
  return { files, built };
}

export async function writeOciDir(dir: string, images: ImageOptions[], opts: { nested?: boolean; tag?: string } = {}): Promise<BuiltImage[]> {
  const { files, built } = await ociFiles(images, opts);
  for (const [name, data] of files) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), data);
  }
  return built;
}

export async function writeOciTar(file: string, images: ImageOptions[], opts: { nested?: boolean; tag?: string } = {}): Promise<BuiltImage[]> {
  const { files, built } = await ociFiles(images, opts);
  await writeTar(file, files);
  return built;
}

/**
 * A stack of layers where later ones delete, make opaque, and replace what earlier ones hold
 * (bottom first), covering every entry type the union shows.
 */
export function sampleLayers(): LayerSpec[] {
  return [
    [
      { type: 'dir', path: 'etc', mode: 0o755 },
      { type: 'file', path: 'etc/passwd', content: 'root:x:0:0::/root:/bin/sh\n' },
      { type: 'file', path: 'etc/hostname', content: 'base\n', mode: 0o600 },
      { type: 'dir', path: 'usr' },
      { type: 'dir', path: 'usr/bin' },
      { type: 'file', path: 'usr/bin/tool', content: 'v1 tool', mode: 0o755 },
      { type: 'file', path: 'usr/bin/old', content: 'to be deleted', mode: 0o755 },
      { type: 'symlink', path: 'usr/bin/t', target: 'tool' },
      { type: 'dir', path: 'var' },
      { type: 'dir', path: 'var/cache' },
      { type: 'file', path: 'var/cache/a', content: 'cache a' },
      { type: 'dir', path: 'var/cache/sub' },
      { type: 'file', path: 'var/cache/sub/b', content: 'cache b' },
      { type: 'dir', path: 'opt' },
      { type: 'file', path: 'opt/file-then-dir', content: 'was a file' },
      { type: 'dir', path: 'opt/dir-then-file' },
      { type: 'file', path: 'opt/dir-then-file/inner', content: 'inner' },
      { type: 'file', path: 'hard-a', content: 'linked', uid: 1000, gid: 1000 },
      { type: 'hardlink', path: 'hard-b', target: 'hard-a' },
      { type: 'fifo', path: 'pipe', mode: 0o600 },
      { type: 'dir', path: 'gone' },
      { type: 'file', path: 'gone/x', content: 'x' },
    ],
    [
      { type: 'dir', path: 'usr/bin', mode: 0o750, mtime: DEFAULT_MTIME + 5000 },
      { type: 'whiteout', path: 'usr/bin/old' },
      { type: 'file', path: 'usr/bin/tool', content: 'version two of the tool', mode: 0o700 },
      { type: 'dir', path: 'var/cache' },
      { type: 'opaque', path: 'var/cache' },
      { type: 'file', path: 'var/cache/fresh', content: 'fresh' },
      { type: 'whiteout', path: 'gone' },
      { type: 'whiteout', path: 'opt/file-then-dir' },
      { type: 'dir', path: 'opt/file-then-dir' },
      { type: 'file', path: 'opt/file-then-dir/now', content: 'now a dir' },
      { type: 'whiteout', path: 'opt/dir-then-file' },
      { type: 'file', path: 'opt/dir-then-file', content: 'now a file' },
    ],
    [
      { type: 'file', path: 'etc/hostname', content: 'top\n', mode: 0o644, uid: 1, gid: 2 },
      { type: 'symlink', path: 'usr/bin/t', target: '/usr/bin/tool' },
      { type: 'dir', path: 'gone' },
      { type: 'file', path: 'gone/back', content: 'back again' },
      { type: 'whiteout', path: 'pipe' },
      { type: 'dir', path: 'new', mode: 0o1777 },
      { type: 'file', path: 'new/setuid', content: 's', mode: 0o4755 },
    ],
  ];
}
