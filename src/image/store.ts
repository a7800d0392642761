// The store: unpacked layers, known images and containers, under one root directory.
//
//   <root>/layers/sha256/<diff_id hex>/diff/        the layer's files (a lowerdir; overlay whiteouts)
//   <root>/layers/sha256/<diff_id hex>/layer.json   what it is and when it was unpacked
//   <root>/images/<config digest hex>.json          an image: diff_ids (bottom first), tags
//   <root>/containers/<name>/{upper,work}/          a container's writable layer
//   <root>/containers/<name>/container.json         its image, mountpoint, creation time, server
//   <root>/locks/<name>.lock                        flock files (lock.ts)
//   <root>/tmp/<pid>-<start ticks>-<random>/        work in progress, never read by anyone else
//
// A layer directory exists only once complete: a layer is unpacked into tmp/, made durable with
// syncfs(2), and renamed into place (rename without replace); nothing else ever creates a name
// under layers/. A crash leaves at most a tmp/ directory, which no one uses, and which the next
// store user removes once the process named in it is gone. Two processes that want the same
// missing layer serialize on its lock; the second finds it in place and unpacks nothing.
// The files sit in a diff/ subdirectory so that the store's own metadata never shows in a mount.
import { randomBytes } from 'node:crypto';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { hasCode } from '../errno.js';
import * as io from '../host/store-io.js';
import { startTicks } from '../host/runtime.js';
import { digestHex, isSha256Digest } from './digest.js';
import { StoreError } from './errors.js';
import { acquireLock, withLock, type Lock } from './lock.js';

/** $LAYERFS_HOME, else /var/lib/layerfs for root, else $XDG_DATA_HOME/layerfs (~/.local/share/layerfs). */
export function defaultHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LAYERFS_HOME) return env.LAYERFS_HOME;
  if (process.getuid?.() === 0) return '/var/lib/layerfs';
  return join(env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'layerfs');
}

export interface LayerMeta {
  readonly diffId: string;
  /** When it was unpacked (ISO 8601). */
  readonly unpacked: string;
  /** The image it was first unpacked from (for people reading the store). */
  readonly source?: string;
}

export interface ImageRecord {
  /** The config digest. */
  readonly id: string;
  readonly repoTags: readonly string[];
  /** Bottom first, as in the image. */
  readonly diffIds: readonly string[];
  readonly platform?: string;
  readonly format: string;
  /** The file or directory it was read from, last time. */
  readonly source: string;
  /** When it was first recorded (ISO 8601). */
  readonly added: string;
}

export interface ContainerRecord {
  readonly name: string;
  /** The image id (config digest). */
  readonly image: string;
  /** How to show the image: its first tag, else its short id. */
  readonly imageName: string;
  /** The lower layers' diff_ids, bottom first. */
  readonly layers: readonly string[];
  readonly mountpoint: string;
  readonly created: string;
  /** The mount options (-o) it was last mounted with, one per element; absent in older records. */
  readonly options?: readonly string[];
  /** The server of its mount, once mounted (pid and start time, as in the runtime records). */
  readonly server?: { readonly pid: number; readonly startTicks: string };
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function checkContainerName(name: string): void {
  if (!NAME.test(name)) {
    throw new StoreError(`invalid container name ${JSON.stringify(name)}: use letters, digits, "_", "." and "-", starting with a letter or digit (at most 128)`);
  }
}

export const shortId = (id: string): string => id.replace(/^sha256:/, '').slice(0, 12);

export class Store {
  private constructor(readonly root: string) {}

  /** Open (creating its directories) the store at root and remove what crashed processes left. */
  static async open(root = defaultHome()): Promise<Store> {
    const s = new Store(root);
    await io.mkdirs(root, 0o700);
    for (const d of ['layers/sha256', 'images', 'containers', 'locks', 'tmp']) await io.mkdirs(join(root, d), 0o700);
    await s.cleanTmp();
    return s;
  }

  // --- layers -----------------------------------------------------------------------------

  layerPath(diffId: string): string {
    return join(this.root, 'layers', 'sha256', digestHex(diffId));
  }

  /** The directory holding the layer's files: what goes into lowerdir. */
  layerDiff(diffId: string): string {
    return join(this.layerPath(diffId), 'diff');
  }

  async hasLayer(diffId: string): Promise<boolean> {
    return (await io.lstatOrUndefined(this.layerPath(diffId))) !== undefined;
  }

  /** diff_ids of the layers in the store. */
  async listLayers(): Promise<string[]> {
    return (await io.listDir(join(this.root, 'layers', 'sha256'))).filter((n) => /^[0-9a-f]{64}$/.test(n)).map((h) => `sha256:${h}`);
  }

  lockPath(name: string): string {
    return join(this.root, 'locks', `${name}.lock`);
  }

  /**
   * Lock every layer of diffIds that is not in the store yet, in one global order (sorted), so
   * that processes locking overlapping sets never deadlock. Returns the ones still missing once
   * locked, which the caller adds with addLayer() before release().
   */
  async lockMissingLayers(diffIds: readonly string[], onWait?: (diffId: string) => void): Promise<{ missing: string[]; release(): void }> {
    const held: Lock[] = [];
    const missing: string[] = [];
    const release = (): void => {
      for (const l of held.splice(0)) l.release();
    };
    try {
      for (const d of [...new Set(diffIds)].sort()) {
        if (await this.hasLayer(d)) continue;
        const l = await acquireLock(this.lockPath(`layer-${digestHex(d)}`), () => onWait?.(d));
        if (await this.hasLayer(d)) {
          l.release(); // another process added it while we waited
          continue;
        }
        held.push(l);
        missing.push(d);
      }
    } catch (e) {
      release();
      throw e;
    }
    return { missing, release };
  }

  /**
   * Add a layer: fill(dir) writes its files into an empty directory under tmp/, which then
   * becomes the layer in one rename. The caller holds the layer's lock (lockMissingLayers).
   * If fill fails, nothing is added and the partial directory is removed.
   */
  async addLayer(diffId: string, fill: (dir: string) => Promise<void>, meta: { source?: string } = {}): Promise<void> {
    const final = this.layerPath(diffId);
    const tmp = await this.newTmpDir();
    try {
      const diff = join(tmp, 'diff');
      await io.mkdirNew(diff, 0o755);
      await fill(diff);
      const m: LayerMeta = { diffId, unpacked: new Date().toISOString(), ...(meta.source !== undefined ? { source: meta.source } : {}) };
      await io.writeFileAtomic(join(tmp, 'layer.json'), `${JSON.stringify(m, null, 2)}\n`);
      // Durable before it is visible: after a crash, a layer dir is complete or absent.
      io.syncFilesystem(tmp);
      if (!(await this.publish(tmp, final))) await io.removeTree(tmp);
      await io.fsyncPath(dirname(final));
    } catch (e) {
      await io.removeTree(tmp).catch(() => undefined);
      throw e;
    }
  }

  /** Rename tmp to final unless final exists; false when it did. */
  private async publish(tmp: string, final: string): Promise<boolean> {
    try {
      io.renameNoReplace(tmp, final);
      return true;
    } catch (e) {
      if (hasCode(e, 'EEXIST') || hasCode(e, 'ENOTEMPTY')) return false;
      if (!hasCode(e, 'EINVAL')) throw e;
    }
    // No RENAME_NOREPLACE on this filesystem: under the layer's lock a check first is enough.
    if ((await io.lstatOrUndefined(final)) !== undefined) return false;
    await io.rename(tmp, final);
    return true;
  }

  /** A new private directory under tmp/, named after this process so that cleanTmp() can tell when it is abandoned. */
  async newTmpDir(tag = ''): Promise<string> {
    for (;;) {
      const p = join(this.root, 'tmp', `${process.pid}-${startTicks(process.pid) ?? '0'}-${randomBytes(6).toString('hex')}${tag}`);
      if (await io.mkdirNew(p, 0o700)) return p;
    }
  }

  /** Remove tmp/ entries whose process is gone (crashed or killed). Returns how many. */
  async cleanTmp(): Promise<number> {
    let n = 0;
    for (const name of await io.listDir(join(this.root, 'tmp'))) {
      const m = /^(\d+)-(\d+)-/.exec(name);
      if (m === null) continue;
      if (startTicks(Number(m[1])) === m[2]) continue; // its process still runs
      await io.removeTree(join(this.root, 'tmp', name));
      n++;
    }
    return n;
  }

  // --- images -----------------------------------------------------------------------------

  private imagePath(id: string): string {
    return join(this.root, 'images', `${digestHex(id)}.json`);
  }

  /**
   * Record an image. A tag names one image: it moves from any other record to this one. Its
   * layers must be in the store: under the images lock, which `removeImage` holds while it
   * deletes layers, so that an image never comes to name a layer that is being removed.
   */
  async putImage(rec: Omit<ImageRecord, 'added'>): Promise<ImageRecord> {
    return withLock(this.lockPath('images'), async () => {
      await this.requireLayers(rec.diffIds, `image ${shortId(rec.id)}`);
      const old = await this.getImage(rec.id);
      for (const other of await this.listImages()) {
        if (other.id === rec.id || !other.repoTags.some((t) => rec.repoTags.includes(t))) continue;
        const kept = { ...other, repoTags: other.repoTags.filter((t) => !rec.repoTags.includes(t)) };
        await io.writeFileAtomic(this.imagePath(other.id), `${JSON.stringify(kept, null, 2)}\n`);
      }
      const full: ImageRecord = {
        ...rec,
        repoTags: [...new Set([...rec.repoTags, ...(old?.repoTags ?? [])])],
        added: old?.added ?? new Date().toISOString(),
      };
      await io.writeFileAtomic(this.imagePath(rec.id), `${JSON.stringify(full, null, 2)}\n`);
      return full;
    });
  }

  /**
   * `layerfs image rm`: by a tag the image has beside others, only that tag goes; else the image
   * record, and then each of its layers that no other image and no container uses. Refused while
   * a container uses the image. Under the images lock (see putImage, createContainer).
   */
  async removeImage(ref: string): Promise<{ untagged?: string; removed?: string; layers: string[] }> {
    return withLock(this.lockPath('images'), async () => {
      const image = await this.findImage(ref);
      if (image === undefined) throw new StoreError(`no such image: ${ref}`);
      const tag = image.repoTags.includes(ref) ? ref : image.repoTags.includes(`${ref}:latest`) ? `${ref}:latest` : undefined;
      if (tag !== undefined && image.repoTags.length > 1) {
        const kept = { ...image, repoTags: image.repoTags.filter((t) => t !== tag) };
        await io.writeFileAtomic(this.imagePath(image.id), `${JSON.stringify(kept, null, 2)}\n`);
        return { untagged: tag, layers: [] };
      }
      const users = (await this.listContainers()).filter((c) => c.image === image.id).map((c) => c.name);
      if (users.length > 0) {
        throw new StoreError(`image ${shortId(image.id)} is used by container${users.length > 1 ? 's' : ''} ${users.join(', ')}: remove ${users.length > 1 ? 'them' : 'it'} first (layerfs container rm)`);
      }
      const used = new Set<string>();
      for (const i of await this.listImages()) if (i.id !== image.id) for (const d of i.diffIds) used.add(d);
      for (const c of await this.listContainers()) for (const d of c.layers) used.add(d);
      const layers: string[] = [];
      for (const d of new Set(image.diffIds)) {
        if (used.has(d) || !(await this.hasLayer(d))) continue;
        // Into tmp/ first: gone from layers/ in one step; cleanTmp() finishes an interrupted delete.
        const tmp = await this.newTmpDir('-rm-layer');
        await io.rename(this.layerPath(d), join(tmp, 'layer'));
        await io.removeTree(tmp);
        layers.push(d);
      }
      // The record last: interrupted, the image is left with layers missing, which its next use
      // names, and `image rm` can still be asked again; no layer is left that nothing names.
      await io.unlink(this.imagePath(image.id));
      return { removed: image.id, layers };
    });
  }

  /** Throws, naming `what`, unless every layer of diffIds is in the store. */
  async requireLayers(diffIds: readonly string[], what: string): Promise<void> {
    for (const d of new Set(diffIds)) {
      if (!(await this.hasLayer(d))) throw new StoreError(`${what}: layer ${d} is not in the store (removed by \`layerfs image rm\`?): mount the image from its file again`);
    }
  }

  async getImage(id: string): Promise<ImageRecord | undefined> {
    return readJsonOrUndefined<ImageRecord>(this.imagePath(id));
  }

  async listImages(): Promise<ImageRecord[]> {
    const out: ImageRecord[] = [];
    for (const n of (await io.listDir(join(this.root, 'images'))).sort()) {
      const m = /^([0-9a-f]{64})\.json$/.exec(n);
      if (m === null) continue;
      const r = await this.getImage(`sha256:${m[1]}`);
      if (r !== undefined) out.push(r);
    }
    return out;
  }

  /** An image by tag ("name:tag", or "name" for ":latest"), full id, or a unique id prefix (4+ hex digits). */
  async findImage(ref: string): Promise<ImageRecord | undefined> {
    const all = await this.listImages();
    const byTag = all.find((i) => i.repoTags.includes(ref)) ?? (ref.includes(':') ? undefined : all.find((i) => i.repoTags.includes(`${ref}:latest`)));
    if (byTag !== undefined) return byTag;
    const hex = ref.replace(/^sha256:/, '');
    if (isSha256Digest(ref)) return all.find((i) => i.id === ref);
    if (!/^[0-9a-f]{4,64}$/.test(hex)) return undefined;
    const hits = all.filter((i) => digestHex(i.id).startsWith(hex));
    if (hits.length > 1) throw new StoreError(`${ref} names more than one image: give more digits`);
    return hits[0];
  }

  // --- containers -------------------------------------------------------------------------

  containerDir(name: string): string {
    checkContainerName(name);
    return join(this.root, 'containers', name);
  }

  upperDir(name: string): string {
    return join(this.containerDir(name), 'upper');
  }

  workDir(name: string): string {
    return join(this.containerDir(name), 'work');
  }

  /**
   * Create a container: its directory (the name is taken atomically, by mkdir), an empty upper
   * and work dir, and its record. The upper's root takes the owner, mode and times of rootLike
   * (the top layer's root), since a mount shows the upper's root attributes.
   */
  async createContainer(rec: ContainerRecord, rootLike?: string): Promise<void> {
    // Under the images lock: removeImage never sees a container half made, nor removes a layer
    // that one is about to use.
    return withLock(this.lockPath('images'), () => this.createContainerLocked(rec, rootLike));
  }

  private async createContainerLocked(rec: ContainerRecord, rootLike?: string): Promise<void> {
    const dir = this.containerDir(rec.name);
    await this.requireLayers(rec.layers, `container ${rec.name}`);
    if (!(await io.mkdirNew(dir, 0o700))) throw new StoreError(`a container named ${rec.name} exists already`);
    try {
      const upper = this.upperDir(rec.name);
      await io.mkdirNew(upper, 0o755);
      await io.mkdirNew(this.workDir(rec.name), 0o700);
      if (rootLike !== undefined) {
        const st = await io.stat(rootLike);
        await io.lchown(upper, st.uid, st.gid);
        await io.chmod(upper, st.mode & 0o7777);
        await io.utimes(upper, st.atime, st.mtime);
      }
      await this.updateContainer(rec);
    } catch (e) {
      await io.removeTree(dir).catch(() => undefined);
      throw e;
    }
  }

  async updateContainer(rec: ContainerRecord): Promise<void> {
    await io.writeFileAtomic(join(this.containerDir(rec.name), 'container.json'), `${JSON.stringify(rec, null, 2)}\n`);
  }

  async getContainer(name: string): Promise<ContainerRecord | undefined> {
    return readJsonOrUndefined<ContainerRecord>(join(this.containerDir(name), 'container.json'));
  }

  async listContainers(): Promise<ContainerRecord[]> {
    const out: ContainerRecord[] = [];
    for (const n of (await io.listDir(join(this.root, 'containers'))).sort()) {
      if (!NAME.test(n)) continue;
      const c = await this.getContainer(n);
      if (c !== undefined) out.push(c);
    }
    return out;
  }

  /**
   * Delete a container's directory. It is first renamed into tmp/ (one step: the name is free
   * and the container gone at once), then removed; an interrupted removal is finished by cleanTmp().
   */
  async removeContainer(name: string): Promise<void> {
    const dir = this.containerDir(name);
    const tmp = await this.newTmpDir(`-rm-${name}`);
    const dest = join(tmp, 'c');
    try {
      await io.rename(dir, dest);
    } catch (e) {
      await io.removeTree(tmp);
      if (hasCode(e, 'ENOENT')) throw new StoreError(`no such container: ${name}`);
      throw e;
    }
    await io.removeTree(tmp);
  }
}

async function readJsonOrUndefined<T>(p: string): Promise<T | undefined> {
  let data: Buffer;
  try {
    data = await io.readFile(p);
  } catch (e) {
    if (hasCode(e, 'ENOENT')) return undefined;
    throw e;
  }
  try {
    return JSON.parse(data.toString('utf8')) as T;
  } catch {
    throw new StoreError(`${p} is damaged (not valid JSON)`);
  }
}
