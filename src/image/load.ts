// Getting an image into the store: read it, verify every digest, unpack the layers the store
// does not have yet, record the image. Verification is complete before the first byte is
// written to the store, so a bad image leaves nothing behind.
import type { Readable } from 'node:stream';
import { consumeHashing } from './digest.js';
import { ImageError } from './errors.js';
import { formatPlatform, readImage, verifyLayers, type ImageInfo, type LayerRef } from './reader.js';
import { openSource } from './source.js';
import type { ImageRecord, Store } from './store.js';

/** How a layer tar becomes a directory (src/layer/apply.ts's applyLayer, or a stand-in in tests). */
export type ApplyFn = (input: Readable, dir: string, opts: { whiteout: 'overlay'; allowDevices?: boolean }) => Promise<unknown>;

export interface LoadOptions {
  readonly apply: ApplyFn;
  readonly platform?: string;
  /** Of several images in the archive, the one of this name or id (ReadOptions.image). */
  readonly image?: string;
  /** Let layers create device nodes (refused otherwise). */
  readonly allowDevices?: boolean;
  /** One line per event worth telling (a layer unpacked, a wait for another process). */
  readonly onProgress?: (line: string) => void;
}

export interface LoadedImage {
  readonly image: ImageRecord;
  /** The layers' directories for lowerdir, TOP first; a layer repeated in the image is listed once (its top-most place). */
  readonly lowers: readonly string[];
}

/** Read, verify and unpack the image at path. */
export async function loadImage(store: Store, path: string, opts: LoadOptions): Promise<LoadedImage> {
  const src = await openSource(path);
  const info = await readImage(src, {
    ...(opts.platform !== undefined ? { platform: opts.platform } : {}),
    ...(opts.image !== undefined ? { image: opts.image } : {}),
  });
  const verified = await verifyLayers(src, info);
  const progress = opts.onProgress ?? (() => undefined);

  const lock = await store.lockMissingLayers(info.layers.map((l) => l.diffId), (d) => progress(`waiting: another process is unpacking ${d}`));
  try {
    // One entry per missing diff_id (the same layer may appear twice, or under two names).
    const wanted = new Map<string, LayerRef>();
    const taken = new Set<string>();
    for (const l of info.layers) {
      if (!lock.missing.includes(l.diffId) || taken.has(l.diffId) || wanted.has(l.entry)) continue;
      wanted.set(l.entry, l);
      taken.add(l.diffId);
    }
    await src.readEach([...wanted.keys()], async (entry, data) => {
      const l = wanted.get(entry)!;
      const what = `${src.description}: layer ${l.index + 1} of ${info.layers.length} (${l.entry})`;
      await store.addLayer(l.diffId, async (dir) => {
        let got;
        try {
          got = await consumeHashing(data, (s) => opts.apply(s, dir, { whiteout: 'overlay', ...(opts.allowDevices ? { allowDevices: true } : {}) }));
        } catch (e) {
          if (e instanceof ImageError) throw e;
          throw new ImageError(`${what}: ${(e as Error).message}`);
        }
        const want = verified.get(entry)!;
        if (got.digest !== want.digest) throw new ImageError(`${what}: changed while it was being read (it was ${want.digest}, now ${got.digest})`);
      }, { source: src.description });
      progress(`unpacked layer ${l.index + 1}/${info.layers.length} ${l.diffId}`);
    });
  } finally {
    lock.release();
  }
  for (const l of info.layers) {
    if (!(await store.hasLayer(l.diffId))) throw new ImageError(`${src.description}: layer ${l.index + 1} (${l.diffId}) was not unpacked`);
  }
  const image = await store.putImage(recordOf(info, src.description));
  return { image, lowers: lowersOf(store, image) };
}

function recordOf(info: ImageInfo, source: string): Omit<ImageRecord, 'added'> {
  return {
    id: info.id,
    repoTags: info.repoTags,
    diffIds: info.layers.map((l) => l.diffId),
    ...(info.platform ? { platform: formatPlatform(info.platform) } : {}),
    format: info.format,
    source,
  };
}

/**
 * lowerdir for an image, top first. A layer that the image holds twice is kept only at its
 * top-most place: a layer applied again above itself re-adds every entry it has and hides again
 * everything it hides, so its lower copy changes nothing (and a branch may not be listed twice).
 */
export function lowersOf(store: Store, image: ImageRecord): string[] {
  return layerDirsOf(store, image.diffIds);
}

/** The lowerdirs of layers given bottom first: top first, each layer once (its topmost place). */
export function layerDirsOf(store: Store, diffIds: readonly string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const d of [...diffIds].reverse()) {
    if (seen.has(d)) continue;
    seen.add(d);
    out.push(store.layerDiff(d));
  }
  return out;
}

/** An image already in the store, by tag or id; all its layers must be there. */
export async function storedImage(store: Store, ref: string): Promise<LoadedImage | undefined> {
  const image = await store.findImage(ref);
  if (image === undefined) return undefined;
  await store.requireLayers(image.diffIds, `image ${ref}`);
  return { image, lowers: lowersOf(store, image) };
}
