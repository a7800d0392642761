// Reading an image: which layers, in which order, with which digests.
//
//  docker save  manifest.json: [{ Config, RepoTags, Layers }], Layers bottom first, each a path
//               in the archive ("<id>/layer.tar" before Docker 25, "blobs/sha256/<hex>" since).
//               Newer archives also hold an OCI index.json; manifest.json is read when present.
//  OCI layout   oci-layout, index.json -> (nested indexes) -> image manifest -> config and layer
//               descriptors, every blob at blobs/<alg>/<hex>.
//
// Verification, all of it before anything is written anywhere:
//  1. every index, manifest and config blob against the digest (and size) its descriptor names
//     (docker save: the config against the digest its file name carries), before it is parsed;
//  2. every layer blob against its descriptor digest and size (docker save: "blobs/sha256/<hex>"
//     names carry one too);
//  3. every layer's diff_id, the sha256 of the uncompressed tar, against the config's
//     rootfs.diff_ids at the same position. This is the check that binds the content to the
//     image: the store keeps layers by diff_id.
import { ImageError } from './errors.js';
import { digestHex, isSha256Digest, type BlobDigests } from './digest.js';
import { canonicalName, type ImageSource } from './source.js';

export interface LayerRef {
  /** Position in the image, 0 = bottom. */
  readonly index: number;
  /** The entry holding the layer (a resolved name in the source). */
  readonly entry: string;
  /** The digest of the stored blob, when the image names one (OCI descriptors, docker blobs/). */
  readonly digest?: string;
  readonly size?: number;
  readonly mediaType?: string;
  /** sha256 of the uncompressed layer tar, from the config. */
  readonly diffId: string;
}

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

export interface ImageInfo {
  readonly format: 'docker-save' | 'oci';
  /** The image id: the config's digest. */
  readonly id: string;
  readonly repoTags: readonly string[];
  readonly platform?: Platform;
  /** Bottom first, as in the image. */
  readonly layers: readonly LayerRef[];
}

export interface ReadOptions {
  /** "os/arch[/variant]"; default: the only image, else the host's platform. */
  readonly platform?: string;
  /**
   * Of several images (`docker save a b`, an OCI layout with several names), the one with this
   * name ("app:2"; a name without a tag means ":latest") or id ("sha256:HEX", or 12 or more of
   * its first hex digits). The platform then chooses among the images of that name.
   */
  readonly image?: string;
}

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);
const MANIFEST_TYPES = new Set(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json']);

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The platform this process runs on, in OCI terms. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return { os: process.platform, architecture: arch[process.arch] ?? process.arch };
}

export function parsePlatform(s: string): Platform {
  const [os, architecture, variant, ...rest] = s.split('/');
  if (!os || !architecture || rest.length > 0 || variant === '') throw new ImageError(`--platform takes OS/ARCH[/VARIANT], not ${s}`);
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

export const formatPlatform = (p: Platform): string => `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;

function platformMatches(have: Platform, want: Platform): boolean {
  return have.os === want.os && have.architecture === want.architecture && (want.variant === undefined || have.variant === want.variant);
}

class Reader {
  constructor(private readonly src: ImageSource) {}

  fail(msg: string): never {
    throw new ImageError(`${this.src.description}: ${msg}`);
  }

  async json(name: string, what: string): Promise<unknown> {
    const data = await this.src.read(name);
    try {
      return JSON.parse(data.toString('utf8')) as unknown;
    } catch (e) {
      this.fail(`${what} (${name}) is not valid JSON: ${(e as Error).message}`);
    }
  }

  async entry(name: string, what: string): Promise<string> {
    const r = await this.src.resolve(name);
    if (r === undefined) this.fail(`${what} ${name} is missing from the image`);
    return r;
  }

  /** A blob named by a descriptor, checked against its digest and size before use. */
  async blob(d: Descriptor, what: string): Promise<string> {
    const name = `blobs/sha256/${digestHex(d.digest)}`;
    const entry = await this.entry(name, what);
    const got = await this.src.digests(entry);
    if (got.digest !== d.digest) this.fail(`${what} ${name} does not match its digest: expected ${d.digest}, the blob is ${got.digest}`);
    if (got.size !== d.size) this.fail(`${what} ${name} has ${got.size} bytes, its descriptor says ${d.size}`);
    return entry;
  }

  descriptor(v: unknown, what: string): Descriptor {
    if (!isObject(v) || typeof v.mediaType !== 'string' || typeof v.digest !== 'string' || typeof v.size !== 'number') {
      this.fail(`${what}: not a descriptor (mediaType, digest and size are required)`);
    }
    if (!v.digest.startsWith('sha256:')) this.fail(`${what}: unsupported digest algorithm in ${v.digest} (only sha256 is)`);
    if (!isSha256Digest(v.digest)) this.fail(`${what}: malformed digest ${v.digest}`);
    const d: Descriptor = { mediaType: v.mediaType, digest: v.digest, size: v.size };
    if (isObject(v.platform) && typeof v.platform.os === 'string' && typeof v.platform.architecture === 'string') {
      const p = v.platform;
      d.platform = typeof p.variant === 'string' ? { os: p.os as string, architecture: p.architecture as string, variant: p.variant } : { os: p.os as string, architecture: p.architecture as string };
    }
    if (isObject(v.annotations)) d.annotations = Object.fromEntries(Object.entries(v.annotations).filter((e): e is [string, string] => typeof e[1] === 'string'));
    return d;
  }

  /** The config: rootfs.diff_ids and the platform it says it is for. */
  configOf(cfg: unknown, name: string): { diffIds: string[]; platform?: Platform } {
    if (!isObject(cfg) || !isObject(cfg.rootfs) || !Array.isArray(cfg.rootfs.diff_ids)) this.fail(`config ${name} has no rootfs.diff_ids`);
    if (cfg.rootfs.type !== 'layers') this.fail(`config ${name}: rootfs.type is ${JSON.stringify(cfg.rootfs.type)}, not "layers"`);
    const diffIds = cfg.rootfs.diff_ids.map((d, i) => {
      if (!isSha256Digest(d)) this.fail(`config ${name}: rootfs.diff_ids[${i}] is not a sha256 digest: ${JSON.stringify(d)}`);
      return d;
    });
    if (typeof cfg.os === 'string' && typeof cfg.architecture === 'string') {
      const platform: Platform = typeof cfg.variant === 'string' ? { os: cfg.os, architecture: cfg.architecture, variant: cfg.variant } : { os: cfg.os, architecture: cfg.architecture };
      return { diffIds, platform };
    }
    return { diffIds };
  }
}

/** Read the image's structure (verifying index, manifest and config digests); see the module comment. */
export async function readImage(src: ImageSource, opts: ReadOptions = {}): Promise<ImageInfo> {
  const { r, candidates } = await candidatesOf(src);
  return choose(r, candidates, opts)();
}

/**
 * The ids of the images `image load` takes from an archive, as `docker load` does: every image,
 * and of several platforms under one name the one --platform, or the host's, chooses.
 */
export async function archiveImageIds(src: ImageSource, opts: { readonly platform?: string } = {}): Promise<string[]> {
  const { r, candidates } = await candidatesOf(src);
  const byLabel = new Map<string, Candidate<unknown>[]>();
  for (const c of candidates) byLabel.set(c.label, [...(byLabel.get(c.label) ?? []), c]);
  const ids = new Set<string>();
  for (const group of byLabel.values()) {
    const one = group.length === 1 && opts.platform === undefined ? group[0]! : pick(r, group, opts);
    ids.add(one.id);
  }
  return [...ids];
}

/** Every image of the archive, each with how to read it whole once chosen. */
async function candidatesOf(src: ImageSource): Promise<{ r: Reader; candidates: Candidate<() => Promise<ImageInfo>>[] }> {
  const r = new Reader(src);
  if ((await src.resolve('manifest.json')) !== undefined) return { r, candidates: await dockerSaveImages(r, src) };
  if ((await src.resolve('index.json')) !== undefined) return { r, candidates: await ociLayoutImages(r, src) };
  if ((await src.resolve('repositories')) !== undefined) r.fail('a docker save archive without manifest.json (Docker before 1.10) is not supported');
  return r.fail('not an image: neither manifest.json (docker save) nor index.json (OCI image layout) is there');
}

async function dockerSaveImages(r: Reader, src: ImageSource): Promise<Candidate<() => Promise<ImageInfo>>[]> {
  const manifest = await r.json('manifest.json', 'manifest.json');
  if (!Array.isArray(manifest) || manifest.length === 0) r.fail('manifest.json lists no image');
  const images = manifest.map((m, i) => {
    if (!isObject(m) || typeof m.Config !== 'string' || !Array.isArray(m.Layers) || !m.Layers.every((l) => typeof l === 'string')) {
      r.fail(`manifest.json entry ${i} lacks Config or Layers`);
    }
    const tags = Array.isArray(m.RepoTags) ? m.RepoTags.filter((t): t is string => typeof t === 'string') : [];
    return { config: m.Config, layers: m.Layers as string[], tags };
  });
  const candidates = await Promise.all(images.map(async (m) => {
    const configEntry = await r.entry(checkedPath(r, m.config), 'config');
    const digests = await src.digests(configEntry);
    // The config's file is named by its digest ("<hex>.json", or "blobs/sha256/<hex>" since Docker 25).
    const named = /(?:^|\/)([0-9a-f]{64})(?:\.json)?$/.exec(m.config)?.[1];
    if (named !== undefined && digests.digest !== `sha256:${named}`) {
      r.fail(`config ${m.config} does not match the digest in its name: it is ${digests.digest}`);
    }
    const cfg = r.configOf(await r.json(configEntry, 'config'), m.config);
    return { ...m, configEntry, id: digests.digest, cfg };
  }));
  return candidates.map((c) => ({ item: () => dockerSaveInfo(r, c), platform: c.cfg.platform, label: c.tags[0] ?? c.id, names: c.tags, id: c.id }));
}

async function dockerSaveInfo(
  r: Reader,
  chosen: { layers: string[]; tags: string[]; id: string; cfg: { diffIds: string[]; platform?: Platform } },
): Promise<ImageInfo> {
  const { cfg } = chosen;
  if (cfg.diffIds.length !== chosen.layers.length) {
    r.fail(`manifest.json lists ${chosen.layers.length} layers but the config has ${cfg.diffIds.length} diff_ids`);
  }
  const layers: LayerRef[] = [];
  for (const [i, path] of chosen.layers.entries()) {
    const entry = await r.entry(checkedPath(r, path), `layer ${i + 1} of ${chosen.layers.length}`);
    const named = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(canonicalName(path) ?? '')?.[1];
    layers.push({ index: i, entry, diffId: cfg.diffIds[i]!, ...(named !== undefined ? { digest: `sha256:${named}` } : {}) });
  }
  return { format: 'docker-save', id: chosen.id, repoTags: chosen.tags, ...(cfg.platform ? { platform: cfg.platform } : {}), layers };
}

function checkedPath(r: Reader, p: string): string {
  if (canonicalName(p) === undefined || p.startsWith('/')) r.fail(`path ${JSON.stringify(p)} in manifest.json leads outside the image`);
  return p;
}

interface Candidate<T> {
  item: T;
  platform: Platform | undefined;
  label: string;
  /** The names the image is known by, and its id (the config's digest): what --image matches. */
  names: readonly string[];
  id: string;
}

/** Does an image of these names and id answer to `ref` (ReadOptions.image)? */
function answersTo(ref: string, names: readonly string[], id: string): boolean {
  if (names.includes(ref)) return true;
  // "app" is "app:latest", as Docker reads a name without a tag (a ':' after the last '/' is a tag).
  if (!ref.slice(ref.lastIndexOf('/') + 1).includes(':') && !ref.includes('@') && names.includes(`${ref}:latest`)) return true;
  const hex = ref.replace(/^sha256:/, '');
  return /^[0-9a-f]{12,64}$/.test(hex) && id.startsWith(`sha256:${hex}`);
}

/** Pick one image: by --image and --platform, else the only one, else the host's platform. */
function choose<T>(r: Reader, every: Candidate<T>[], opts: ReadOptions): T {
  return pick(r, every, opts).item;
}

function pick<T>(r: Reader, every: Candidate<T>[], opts: ReadOptions): Candidate<T> {
  const describe = (cs: Candidate<T>[]): string => cs.map((c) => `${c.label} (${c.platform ? formatPlatform(c.platform) : 'platform unknown'})`).join(', ');
  let all = every;
  if (opts.image !== undefined) {
    const ref = opts.image;
    // One image listed under two names (an OCI index entry per name) is one image.
    const key = (c: Candidate<T>): string => `${c.id} ${c.platform ? formatPlatform(c.platform) : ''}`;
    const named = every.filter((c) => answersTo(ref, c.names, c.id));
    all = named.filter((c, i) => named.findIndex((o) => key(o) === key(c)) === i);
    if (all.length === 0) r.fail(`no image named ${ref}; the image has: ${describe(every)}`);
  }
  if (opts.platform !== undefined) {
    const want = parsePlatform(opts.platform);
    const hits = all.filter((c) => c.platform !== undefined && platformMatches(c.platform, want));
    if (hits.length === 0) r.fail(`no image for platform ${opts.platform}; the image has: ${describe(all)}`);
    if (hits.length > 1) r.fail(`more than one image for platform ${opts.platform}: ${describe(hits)}`);
    return hits[0]!;
  }
  if (all.length === 1) return all[0]!;
  const host = hostPlatform();
  const hits = all.filter((c) => c.platform !== undefined && platformMatches(c.platform, host));
  if (hits.length === 1) return hits[0]!;
  const how = opts.image === undefined && new Set(all.map((c) => c.label)).size > 1 ? '--image NAME or ' : '';
  return r.fail(`the image holds ${all.length} images: ${describe(all)}; choose one with ${how}--platform OS/ARCH[/VARIANT]`);
}

async function ociLayoutImages(r: Reader, src: ImageSource): Promise<Candidate<() => Promise<ImageInfo>>[]> {
  const layout = (await src.resolve('oci-layout')) === undefined ? undefined : await r.json('oci-layout', 'oci-layout');
  if (!isObject(layout) || typeof layout.imageLayoutVersion !== 'string') r.fail('oci-layout is missing or has no imageLayoutVersion: not an OCI image layout');
  if (!layout.imageLayoutVersion.startsWith('1.')) r.fail(`unsupported OCI image layout version ${layout.imageLayoutVersion}`);

  // Every image manifest reachable from index.json, with the names it is known by.
  interface Found {
    desc: Descriptor;
    names: string[];
  }
  const found: Found[] = [];
  const walk = async (index: unknown, where: string, names: string[], depth: number): Promise<void> => {
    if (depth > 8) r.fail(`${where}: indexes nested too deep`);
    if (!isObject(index) || !Array.isArray(index.manifests)) r.fail(`${where} has no manifests list`);
    for (const [i, v] of index.manifests.entries()) {
      const d = r.descriptor(v, `${where} manifests[${i}]`);
      const a = d.annotations ?? {};
      // Build attestations ride along as manifests for platform unknown/unknown: not images.
      if (a['vnd.docker.reference.type'] === 'attestation-manifest' || d.platform?.os === 'unknown') continue;
      // The full name where containerd (and docker save) records one; else the layout's own ref name.
      const own = a['io.containerd.image.name'] ?? a['org.opencontainers.image.ref.name'];
      const known = own !== undefined ? [own] : names;
      if (INDEX_TYPES.has(d.mediaType)) {
        const entry = await r.blob(d, 'index');
        await walk(await r.json(entry, 'index'), `index ${d.digest}`, known, depth + 1);
      } else if (MANIFEST_TYPES.has(d.mediaType)) {
        found.push({ desc: d, names: known });
      } // other artifact types are not images
    }
  };
  await walk(await r.json('index.json', 'index.json'), 'index.json', [], 0);
  if (found.length === 0) r.fail('index.json leads to no image manifest');

  const candidates = await Promise.all(found.map(async (f) => {
    const entry = await r.blob(f.desc, 'manifest');
    const m = await r.json(entry, 'manifest');
    if (!isObject(m) || !Array.isArray(m.layers)) r.fail(`manifest ${f.desc.digest} has no layers list`);
    const config = r.descriptor(m.config, `manifest ${f.desc.digest} config`);
    const configEntry = await r.blob(config, 'config');
    const cfg = r.configOf(await r.json(configEntry, 'config'), `blobs/sha256/${digestHex(config.digest)}`);
    const layers = m.layers.map((l, i) => r.descriptor(l, `manifest ${f.desc.digest} layers[${i}]`));
    return { f, config, cfg, layers, platform: f.desc.platform ?? cfg.platform };
  }));
  return candidates.map((c) => ({ item: () => ociInfo(r, c), platform: c.platform, label: c.f.names[0] ?? c.f.desc.digest, names: c.f.names, id: c.config.digest }));
}

async function ociInfo(
  r: Reader,
  chosen: { f: { desc: Descriptor; names: string[] }; config: Descriptor; cfg: { diffIds: string[] }; layers: Descriptor[]; platform: Platform | undefined },
): Promise<ImageInfo> {
  if (chosen.cfg.diffIds.length !== chosen.layers.length) {
    r.fail(`manifest ${chosen.f.desc.digest} has ${chosen.layers.length} layers but its config has ${chosen.cfg.diffIds.length} diff_ids`);
  }
  const layers: LayerRef[] = [];
  for (const [i, d] of chosen.layers.entries()) {
    const what = `layer ${i + 1} of ${chosen.layers.length} (${d.digest})`;
    if (!/tar/.test(d.mediaType)) r.fail(`${what}: ${d.mediaType} is not a layer type`);
    const entry = await r.entry(`blobs/sha256/${digestHex(d.digest)}`, what);
    layers.push({ index: i, entry, digest: d.digest, size: d.size, mediaType: d.mediaType, diffId: chosen.cfg.diffIds[i]! });
  }
  return {
    format: 'oci',
    id: chosen.config.digest,
    repoTags: chosen.f.names,
    ...(chosen.platform ? { platform: chosen.platform } : {}),
    layers,
  };
}

/** A layer that failed verification, named for the user. */
function layerName(img: ImageInfo, l: LayerRef): string {
  return `layer ${l.index + 1} of ${img.layers.length} (${l.entry})`;
}

/**
 * Verify every layer: stored digest and size where the image names them, and the diff_id.
 * Returns the digests computed, by entry, for the caller to check the bytes it unpacks against.
 */
export async function verifyLayers(src: ImageSource, img: ImageInfo): Promise<Map<string, BlobDigests>> {
  const out = new Map<string, BlobDigests>();
  for (const l of img.layers) {
    const d = await src.digests(l.entry);
    const what = `${src.description}: ${layerName(img, l)}`;
    if (l.digest !== undefined && d.digest !== l.digest) throw new ImageError(`${what}: the blob does not match its digest: expected ${l.digest}, got ${d.digest}`);
    if (l.size !== undefined && d.size !== l.size) throw new ImageError(`${what}: the blob has ${d.size} bytes, its descriptor says ${l.size}`);
    if ('error' in d.uncompressed) throw new ImageError(`${what}: ${d.uncompressed.error}`);
    if (d.uncompressed.digest !== l.diffId) {
      throw new ImageError(`${what}: the uncompressed layer does not match the config's diff_id: expected ${l.diffId}, got ${d.uncompressed.digest}`);
    }
    out.set(l.entry, d);
  }
  return out;
}
