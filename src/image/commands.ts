// `layerfs image ...` and `layerfs container ...`: argument parsing and the steps of each command.
// Output goes through the CommandIO given by src/cli.ts (the only place that prints or exits);
// mounting and unmounting are src/cli.ts's own mount and umount commands, handed in as MountFns,
// so an image mount is started, tracked and stopped exactly as any other mount.
//
// Output is plain for scripts: `image mount` prints the container's name on stdout (progress
// goes to stderr); the listings are one line per item, fields separated by tabs, after a header.
import { randomBytes } from 'node:crypto';
import { resolve as resolvePath } from 'node:path';
import { ConfigError, splitOptions } from '../config.js';
import * as io from '../host/store-io.js';
import { readRecord } from '../host/runtime.js';
import { applyLayer } from '../layer/apply.js';
import { parseEpoch } from '../layer/commands.js';
import { commitLayerToFile } from '../layer/commit.js';
import { checkPaths, mountPoints } from '../preflight.js';
import { ImageError, StoreError } from './errors.js';
import { withLock } from './lock.js';
import { layerDirsOf, loadImage, storedImage, type LoadedImage } from './load.js';
import { archiveImageIds } from './reader.js';
import { openSource } from './source.js';
import { Store, checkContainerName, defaultHome, shortId, type ContainerRecord } from './store.js';

export interface CommandIO {
  /** A line (without its newline) for stdout. */
  out(line: string): void;
  /** A line for stderr. */
  err(line: string): void;
}

export interface MountFns {
  /** `layerfs mount ARGS...` (returns once the mount serves, or with the code of its failure). */
  mount(args: string[]): Promise<number>;
  /** `layerfs umount MOUNTPOINT`. */
  umount(args: string[]): Promise<number>;
}

class UsageError extends Error {}

const IMAGE_USAGE = 'usage: layerfs image mount [--name NAME] [--image NAME] [--platform OS/ARCH] [--allow-devices] [-o OPTIONS] IMAGE MOUNTPOINT | layerfs image load [--platform OS/ARCH] [--allow-devices] FILE | layerfs image ls | layerfs image rm IMAGE';
const CONTAINER_USAGE = 'usage: layerfs container ls | layerfs container mount [-o OPTIONS] NAME [MOUNTPOINT] | layerfs container rm NAME | layerfs container commit NAME -o LAYER.tar[.gz] [--gzip] [--reproducible]';

async function usage(io: CommandIO, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.err(`layerfs: ${e.message}`);
    return 2;
  }
}

/** Flags with a value (--name X, --name=X, -o X, -oX), flags without, and positional arguments. */
function parseArgs(args: readonly string[], withValue: readonly string[], bare: readonly string[]): { flags: Map<string, string[]>; positional: string[] } {
  const flags = new Map<string, string[]>();
  const positional: string[] = [];
  const add = (k: string, v: string): void => void flags.set(k, [...(flags.get(k) ?? []), v]);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      positional.push(...args.slice(i + 1));
      break;
    }
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const key = eq > 0 ? a.slice(0, eq) : a;
    if (withValue.includes(key)) {
      const v = eq > 0 ? a.slice(eq + 1) : args[++i];
      if (v === undefined) throw new UsageError(`${key} needs a value`);
      add(key, v);
    } else if (key === a && a.startsWith('-o') && a.length > 2 && withValue.includes('-o')) {
      add('-o', a.slice(2));
    } else if (bare.includes(a)) {
      add(a, '');
    } else if (a.startsWith('-') && a !== '-') {
      throw new UsageError(`unknown flag: ${a}`);
    } else {
      positional.push(a);
    }
  }
  return { flags, positional };
}

function one(flags: Map<string, string[]>, key: string): string | undefined {
  const v = flags.get(key);
  if (v !== undefined && v.length > 1) throw new UsageError(`${key} given more than once`);
  return v?.[0];
}

export async function imageCommand(args: readonly string[], out: CommandIO, fns: MountFns): Promise<number> {
  return usage(out, async () => {
    const [sub, ...rest] = args;
    if (sub === 'mount') return imageMount(rest, out, fns);
    if (sub === 'load') return imageLoad(rest, out);
    if (sub === 'ls' || sub === 'list') {
      if (rest.length > 0) throw new UsageError('image ls takes no arguments');
      return imageLs(out);
    }
    if (sub === 'rm' || sub === 'remove') return imageRm(rest, out);
    throw new UsageError(sub === undefined ? IMAGE_USAGE : `unknown image command: ${sub} (${IMAGE_USAGE})`);
  });
}

export async function containerCommand(args: readonly string[], out: CommandIO, fns: MountFns): Promise<number> {
  return usage(out, async () => {
    const [sub, ...rest] = args;
    if (sub === 'ls' || sub === 'list') {
      if (rest.length > 0) throw new UsageError('container ls takes no arguments');
      return containerLs(out);
    }
    if (sub === 'mount') return containerMount(rest, fns);
    if (sub === 'rm' || sub === 'remove') return containerRm(rest, fns);
    if (sub === 'commit') return containerCommit(rest, out);
    throw new UsageError(sub === undefined ? CONTAINER_USAGE : `unknown container command: ${sub} (${CONTAINER_USAGE})`);
  });
}

/** Escape a path for a lowerdir/upperdir value (src/config.ts unescapes "\:", "\," and "\\"). */
const escapeOpt = (p: string): string => p.replace(/[\\:,]/g, (c) => `\\${c}`);

/** A default container name: the image's name and a random suffix ("busybox-3f9a2c"). */
function defaultName(loaded: LoadedImage): string {
  const tag = loaded.image.repoTags[0];
  const base = tag === undefined ? 'c' : tag.replace(/[:@].*$/, '').replace(/^.*\//, '').replace(/[^A-Za-z0-9_.-]/g, '').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64);
  return `${base || 'c'}-${randomBytes(3).toString('hex')}`;
}

async function imageMount(args: readonly string[], out: CommandIO, fns: MountFns): Promise<number> {
  const { flags, positional } = parseArgs(args, ['--name', '--image', '--platform', '-o'], ['--allow-devices']);
  if (positional.length !== 2) throw new UsageError('image mount takes IMAGE and MOUNTPOINT');
  const [imageArg, mountArg] = positional as [string, string];
  const name = one(flags, '--name');
  if (name !== undefined) checkContainerName(name);
  const platform = one(flags, '--platform');
  const which = one(flags, '--image');
  const options = containerOptions(flags);

  const store = await Store.open(defaultHome());
  // Everything that can be checked before the work: the mountpoint, the name.
  const mountpoint = checkPaths({ lowers: [], mountpoint: mountArg }).mountpoint;
  if (name !== undefined && (await store.getContainer(name)) !== undefined) throw new StoreError(`a container named ${name} exists already`);

  let loaded: LoadedImage;
  if ((await io.lstatOrUndefined(imageArg)) !== undefined) {
    loaded = await loadImage(store, imageArg, {
      apply: applyLayer,
      ...(platform !== undefined ? { platform } : {}),
      ...(which !== undefined ? { image: which } : {}),
      allowDevices: flags.has('--allow-devices'),
      onProgress: (line) => out.err(line),
    });
  } else {
    if (which !== undefined) throw new UsageError(`--image chooses among the images of an archive; ${imageArg} is no file`);
    const stored = await storedImage(store, imageArg);
    if (stored === undefined) throw new ImageError(`${imageArg}: no such file, and no image of that name or id in the store (${store.root})`);
    loaded = stored;
  }

  const cname = name ?? defaultName(loaded);
  const rec: ContainerRecord = {
    name: cname,
    image: loaded.image.id,
    imageName: loaded.image.repoTags[0] ?? shortId(loaded.image.id),
    layers: loaded.image.diffIds,
    mountpoint,
    created: new Date().toISOString(),
    options,
  };
  const top = loaded.lowers[0];
  await store.createContainer(rec, top);
  let mounted = false;
  try {
    const lowers = loaded.lowers.length > 0 ? loaded.lowers : [await emptyLayer(store)];
    const code = await fns.mount(mountArgs(store, cname, lowers, options, mountpoint));
    if (code !== 0) return code;
    mounted = true;
    await recordServer(store, rec, mountpoint, options);
  } finally {
    if (!mounted) await store.removeContainer(cname).catch(() => undefined);
  }
  out.out(cname);
  return 0;
}

/** Options the store sets for a container: a user's would mount other layers over its upper. */
const STORE_OPTIONS = new Set(['lowerdir', 'upperdir', 'workdir']);

/** The -o options of an image or container mount, one per element; the store's own refused. */
function containerOptions(flags: Map<string, string[]>): string[] {
  const opts = (flags.get('-o') ?? []).flatMap(splitOptions);
  for (const o of opts) {
    const key = o.split('=', 1)[0]!;
    if (STORE_OPTIONS.has(key)) throw new UsageError(`-o ${key}= is the store's: a container mounts its image's layers and its own upper`);
  }
  return opts;
}

/** `layerfs mount` arguments for container `name` on `lowers` (top first), with the user's -o options. */
function mountArgs(store: Store, name: string, lowers: readonly string[], extra: readonly string[], mountpoint: string): string[] {
  const opts = [`lowerdir=${lowers.map(escapeOpt).join(':')}`, `upperdir=${escapeOpt(store.upperDir(name))}`, `workdir=${escapeOpt(store.workDir(name))}`];
  return ['-o', [opts.join(','), ...extra].join(','), mountpoint];
}

/**
 * Record where the container is mounted now, with which options (the next `container mount`
 * takes them), and by which server (`container ls` and `rm` check both).
 */
async function recordServer(store: Store, c: ContainerRecord, mountpoint: string, options: readonly string[]): Promise<void> {
  const r = readRecord(mountpoint);
  const { server: _old, ...rest } = c;
  await store.updateContainer({ ...rest, mountpoint, options, ...(r !== undefined ? { server: { pid: r.pid, startTicks: r.startTicks } } : {}) });
}

/** An image without layers still needs one lower: an empty directory. */
async function emptyLayer(store: Store): Promise<string> {
  const p = `${store.root}/layers/empty`;
  await io.mkdirs(p, 0o755);
  return p;
}

/** `image load FILE`: every image of an archive into the store, as `docker load`; nothing mounted. */
async function imageLoad(args: readonly string[], out: CommandIO): Promise<number> {
  const { flags, positional } = parseArgs(args, ['--platform'], ['--allow-devices']);
  if (positional.length !== 1) throw new UsageError('image load takes one FILE (a docker save tarball or an OCI image layout)');
  const file = positional[0]!;
  const platform = one(flags, '--platform');
  if ((await io.lstatOrUndefined(file)) === undefined) throw new ImageError(`${file}: no such file`);
  const store = await Store.open(defaultHome());
  const ids = await archiveImageIds(await openSource(file), platform === undefined ? {} : { platform });
  for (const id of ids) {
    const loaded = await loadImage(store, file, {
      apply: applyLayer,
      image: id,
      ...(platform !== undefined ? { platform } : {}),
      allowDevices: flags.has('--allow-devices'),
      onProgress: (line) => out.err(line),
    });
    const tags = loaded.image.repoTags;
    out.out(`loaded ${shortId(loaded.image.id)}${tags.length > 0 ? ` ${tags.join(',')}` : ''}`);
  }
  return 0;
}

async function imageLs(out: CommandIO): Promise<number> {
  const store = await Store.open(defaultHome());
  out.out(['IMAGE ID', 'TAGS', 'LAYERS', 'PLATFORM', 'ADDED'].join('\t'));
  for (const i of await store.listImages()) {
    out.out([shortId(i.id), i.repoTags.length > 0 ? i.repoTags.join(',') : '-', String(i.diffIds.length), i.platform ?? '-', i.added].join('\t'));
  }
  return 0;
}

/** `image rm IMAGE`: a tag of several untagged, else the image and the layers nothing else uses. */
async function imageRm(args: readonly string[], out: CommandIO): Promise<number> {
  const { positional } = parseArgs(args, [], []);
  if (positional.length !== 1) throw new UsageError('image rm takes one IMAGE (a tag or an id)');
  const store = await Store.open(defaultHome());
  const r = await store.removeImage(positional[0]!);
  if (r.untagged !== undefined) out.out(`untagged ${r.untagged}`);
  if (r.removed !== undefined) out.out(`deleted image ${r.removed}`);
  for (const d of r.layers) out.out(`deleted layer ${d}`);
  return 0;
}

/** Is the container's mount there, served by the server that mounted it? */
export function isMounted(c: ContainerRecord): boolean {
  if (c.server === undefined || !mountPoints().has(c.mountpoint)) return false;
  const r = readRecord(c.mountpoint);
  return r !== undefined && r.pid === c.server.pid && r.startTicks === c.server.startTicks;
}

async function containerLs(out: CommandIO): Promise<number> {
  const store = await Store.open(defaultHome());
  out.out(['NAME', 'IMAGE', 'MOUNTPOINT', 'MOUNTED'].join('\t'));
  for (const c of await store.listContainers()) {
    out.out([c.name, c.imageName, c.mountpoint, isMounted(c) ? 'yes' : 'no'].join('\t'));
  }
  return 0;
}

async function findContainer(store: Store, name: string): Promise<ContainerRecord> {
  checkContainerName(name);
  const c = await store.getContainer(name);
  if (c === undefined) throw new StoreError(`no such container: ${name}`);
  return c;
}

/**
 * Mount a container that is not mounted (after `umount`, or a reboot) with its writable layer as
 * it was left: where it was last mounted, or at MOUNTPOINT; with the options it was last mounted
 * with, or those of -o, which are recorded in their place (as a new MOUNTPOINT is).
 */
async function containerMount(args: readonly string[], fns: MountFns): Promise<number> {
  const { flags, positional } = parseArgs(args, ['-o'], []);
  if (positional.length < 1 || positional.length > 2) throw new UsageError('container mount takes NAME and, if it is to move, MOUNTPOINT');
  const store = await Store.open(defaultHome());
  const name = positional[0]!;
  checkContainerName(name);
  // Held from the check to the record: two of these at once must not both mount one upper.
  return withLock(store.lockPath(`container-${name}`), async () => {
    const c = await findContainer(store, name);
    if (isMounted(c)) throw new StoreError(`container ${c.name} is mounted already, at ${c.mountpoint}`);
    const mountpoint = checkPaths({ lowers: [], mountpoint: positional[1] ?? c.mountpoint }).mountpoint;
    await store.requireLayers(c.layers, `container ${c.name}`);
    const options = flags.has('-o') ? containerOptions(flags) : c.options ?? [];
    const lowers = c.layers.length > 0 ? layerDirsOf(store, c.layers) : [await emptyLayer(store)];
    const code = await fns.mount(mountArgs(store, c.name, lowers, options, mountpoint));
    if (code !== 0) return code;
    await recordServer(store, c, mountpoint, options);
    return 0;
  });
}

async function containerRm(args: readonly string[], fns: MountFns): Promise<number> {
  const { positional } = parseArgs(args, [], []);
  if (positional.length !== 1) throw new UsageError('container rm takes one NAME');
  const store = await Store.open(defaultHome());
  const c = await findContainer(store, positional[0]!);
  if (isMounted(c)) {
    const code = await fns.umount([c.mountpoint]);
    if (code !== 0) return code;
  }
  await store.removeContainer(c.name);
  return 0;
}

async function containerCommit(args: readonly string[], out: CommandIO): Promise<number> {
  const { flags, positional } = parseArgs(args, ['-o', '--output'], ['--reproducible', '--gzip']);
  if (positional.length !== 1) throw new UsageError('container commit takes one NAME');
  const outputs = [...(flags.get('-o') ?? []), ...(flags.get('--output') ?? [])];
  if (outputs.length !== 1) throw new UsageError('container commit needs -o LAYER.tar[.gz]');
  const file = resolvePath(outputs[0]!);
  const store = await Store.open(defaultHome());
  const c = await findContainer(store, positional[0]!);
  const gzip = flags.has('--gzip') || /\.(t?gz|gzip)$/.test(file);
  const reproducible = flags.has('--reproducible');
  const epoch = reproducible ? parseEpoch(process.env['SOURCE_DATE_EPOCH']) : undefined;
  let r;
  try {
    r = await commitLayerToFile(store.upperDir(c.name), file, { gzip, reproducible, ...(epoch === undefined ? {} : { epoch }) });
  } catch (e) {
    throw new ConfigError(`cannot commit container ${c.name}: ${(e as Error).message}`);
  }
  out.out(`diff_id ${r.diffId}`);
  if (r.digest !== undefined) out.out(`digest ${r.digest}`);
  return 0;
}
