// layerfs demo: builds three small image layers, mounts them as one merged tree with layerfs,
// shows what the merged tree contains and explains where every file comes from.
//
//   npm run build && node dist/scripts/demo.js      (as root for the full demo)
//
// Everything is created in a fresh temporary directory (a small tmpfs when we are root) and
// removed again at the end, also when something fails.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/scripts/demo.js -> package root
const packageRoot = fileURLToPath(new URL('../..', import.meta.url));
const cli = path.join(packageRoot, 'bin', 'layerfs.js');

const isRoot = process.getuid?.() === 0;

// ---------------------------------------------------------------- output helpers

function heading(text: string): void {
  console.log(`\n=== ${text} ${'='.repeat(Math.max(3, 74 - text.length))}`);
}

function say(text = ''): void {
  console.log(text);
}

function run(cmd: string, args: readonly string[], quiet = false): void {
  const shown = [cmd === process.execPath ? 'node' : cmd, ...args];
  if (!quiet) say(`$ ${shown.map((a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a)).join(' ')}`);
  execFileSync(cmd, args, { stdio: quiet ? 'ignore' : 'inherit' });
}

function tryRun(cmd: string, args: readonly string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function preview(file: string): string {
  const text = fs.readFileSync(file, 'utf8').trim().replace(/\s*\n\s*/g, ' | ');
  return JSON.stringify(text.length > 48 ? `${text.slice(0, 45)}...` : text);
}

// ---------------------------------------------------------------- whiteout markers

const OCI_PREFIX = '.wh.';
const OCI_OPAQUE = '.wh..wh..opq';

function isKernelWhiteout(st: fs.Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

function hasOpaqueXattr(dir: string): boolean {
  try {
    const value = execFileSync('getfattr', ['--only-values', '-n', 'trusted.overlay.opaque', dir], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return value.trim() === 'y';
  } catch {
    return false;
  }
}

function isOpaqueDir(dir: string): boolean {
  return hasOpaqueXattr(dir) || fs.existsSync(path.join(dir, OCI_OPAQUE));
}

function lstatOrNull(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch {
    return null;
  }
}

interface Layer {
  readonly name: string; // "top", "middle", "base"
  readonly dir: string;
}

/** Is `name` (an entry of the directory `rel`) deleted by a whiteout in this layer? */
function whitedOut(layer: Layer, rel: string, name: string): boolean {
  const st = lstatOrNull(path.join(layer.dir, rel, name));
  if (st && isKernelWhiteout(st)) return true;
  return lstatOrNull(path.join(layer.dir, rel, OCI_PREFIX + name)) !== null;
}

/**
 * The layers whose copy of directory `rel` shows through in the merged tree, top first:
 * going down, a layer's directory joins unless a higher layer deleted it (whiteout), replaced
 * it by a non-directory, or marked its own copy opaque (which hides everything below it).
 */
function dirLayers(layers: readonly Layer[], rel: string): Layer[] {
  if (rel === '') return [...layers];
  const parent = path.dirname(rel) === '.' ? '' : path.dirname(rel);
  const name = path.basename(rel);
  const result: Layer[] = [];
  for (const layer of dirLayers(layers, parent)) {
    if (whitedOut(layer, parent, name)) break;
    const st = lstatOrNull(path.join(layer.dir, rel));
    if (!st) continue;
    if (!st.isDirectory()) break;
    result.push(layer);
    if (isOpaqueDir(path.join(layer.dir, rel))) break;
  }
  return result;
}

/** The layer a non-directory entry of the merged tree comes from: the topmost one that has it. */
function fileLayer(layers: readonly Layer[], rel: string): Layer | undefined {
  const parent = path.dirname(rel) === '.' ? '' : path.dirname(rel);
  const name = path.basename(rel);
  for (const layer of dirLayers(layers, parent)) {
    if (whitedOut(layer, parent, name)) return undefined;
    if (lstatOrNull(path.join(layer.dir, rel))) return layer;
  }
  return undefined;
}

// ---------------------------------------------------------------- listings

/** Lists one layer as it is on disk, explaining the whiteout markers. */
function listLayer(dir: string, rel = '', indent = '  '): void {
  const entries = fs.readdirSync(path.join(dir, rel), { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const entry of entries) {
    const full = path.join(dir, rel, entry.name);
    const st = fs.lstatSync(full);
    if (st.isDirectory()) {
      const notes: string[] = [];
      if (hasOpaqueXattr(full)) notes.push('OPAQUE (xattr trusted.overlay.opaque=y): hides the lower layers\' /' + path.join(rel, entry.name));
      say(`${indent}${entry.name}/${notes.length ? `    <- ${notes.join('; ')}` : ''}`);
      listLayer(dir, path.join(rel, entry.name), `${indent}  `);
    } else if (isKernelWhiteout(st)) {
      say(`${indent}${entry.name}    <- WHITEOUT (char device 0:0, kernel format): deletes /${path.join(rel, entry.name)} of the lower layers`);
    } else if (entry.name === OCI_OPAQUE) {
      say(`${indent}${entry.name}    <- OPAQUE marker (OCI format): hides the lower layers' /${rel}`);
    } else if (entry.name.startsWith(OCI_PREFIX)) {
      const hidden = entry.name.slice(OCI_PREFIX.length);
      say(`${indent}${entry.name}    <- WHITEOUT (OCI format): deletes /${path.join(rel, hidden)} of the lower layers`);
    } else {
      say(`${indent}${entry.name}  ${preview(full)}`);
    }
  }
}

/** Recursively lists the merged tree with file contents and where each entry comes from. */
function listMerged(mnt: string, layers: readonly Layer[], rel = '', indent = '  '): string[] {
  const seen: string[] = [];
  const entries = fs.readdirSync(path.join(mnt, rel), { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const entry of entries) {
    const childRel = path.join(rel, entry.name);
    seen.push(`/${childRel}`);
    const full = path.join(mnt, childRel);
    if (entry.isDirectory()) {
      const from = dirLayers(layers, childRel).map((l) => l.name);
      say(`${indent}${entry.name}/`.padEnd(30) + `<- merged from: ${from.join(' + ') || '?'}`);
      seen.push(...listMerged(mnt, layers, childRel, `${indent}  `));
    } else {
      const from = fileLayer(layers, childRel)?.name ?? '?';
      say(`${indent}${entry.name}`.padEnd(30) + `<- ${from} layer   ${preview(full)}`);
    }
  }
  return seen;
}

function isMounted(dir: string): boolean {
  const target = path.resolve(dir);
  try {
    return fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((line) => {
        const field = line.split(' ')[4];
        if (field === undefined) return false;
        const decoded = field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
        return decoded === target;
      });
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- building the layers

interface Formats {
  kernelWhiteout: boolean;
  kernelOpaque: boolean;
}

function write(file: string, content: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
}

function buildLayers(base: string, middle: string, top: string): Formats {
  // base: what a distribution image would contain.
  write(path.join(base, 'etc/os-release'), 'NAME="Demo Linux"\nVERSION_ID="1.0"\n');
  write(path.join(base, 'app/config.json'), '{ "version": 1, "from": "base" }\n');
  write(path.join(base, 'app/old.txt'), 'an obsolete file from the base layer\n');
  write(path.join(base, 'data/a'), 'a, from base\n');
  write(path.join(base, 'data/b'), 'b, from base\n');

  // middle: kernel-overlayfs format (what an overlayfs upper directory looks like).
  write(path.join(middle, 'app/config.json'), '{ "version": 2, "from": "middle" }\n');
  const formats: Formats = { kernelWhiteout: true, kernelOpaque: true };
  try {
    // A whiteout is a character device with device number 0:0 (needs CAP_MKNOD).
    run('mknod', [path.join(middle, 'app/old.txt'), 'c', '0', '0']);
  } catch {
    say('  (mknod failed: not root? using the OCI whiteout .wh.old.txt instead)');
    write(path.join(middle, 'app/.wh.old.txt'), '');
    formats.kernelWhiteout = false;
  }
  write(path.join(middle, 'data/c'), 'c, from middle\n');
  write(path.join(middle, 'data/d'), 'd, from middle\n');
  try {
    // An opaque directory hides the lower layers' directory of the same name (trusted.* xattrs
    // need CAP_SYS_ADMIN).
    run('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path.join(middle, 'data')]);
  } catch {
    say('  (setfattr failed: not root, or no attr package? using the OCI marker .wh..wh..opq instead)');
    write(path.join(middle, 'data', OCI_OPAQUE), '');
    formats.kernelOpaque = false;
  }

  // top: OCI image format (what `docker save` layer tarballs contain).
  write(path.join(top, 'app/main.js'), 'console.log("hello from the top layer");\n');
  write(path.join(top, 'etc/motd'), 'Welcome! (added by the top layer)\n');
  write(path.join(top, 'data/.wh.c'), '');
  return formats;
}

// ---------------------------------------------------------------- main

interface Expectation {
  readonly path: string;
  readonly present: boolean;
  readonly why: string;
}

function main(): number {
  if (!fs.existsSync(cli)) {
    console.error(`layerfs CLI not found at ${cli}: run this from an installed and built checkout (npm run build).`);
    return 1;
  }

  let scratch = '';
  let tmpfsMounted = false;
  let mnt = '';
  let cleanedUp = false;

  const cleanup = (): void => {
    if (cleanedUp) return;
    cleanedUp = true;
    heading('Cleaning up');
    if (mnt && isMounted(mnt)) {
      try {
        run(process.execPath, [cli, 'umount', mnt]);
      } catch {
        say(`layerfs umount failed; detaching ${mnt} with umount -l`);
        tryRun('umount', ['-l', mnt]);
      }
    }
    if (tmpfsMounted) {
      if (!tryRun('umount', [scratch])) tryRun('umount', ['-l', scratch]);
    }
    if (scratch && !(mnt && isMounted(mnt))) {
      fs.rmSync(scratch, { recursive: true, force: true });
      say(`removed ${scratch}`);
    } else if (scratch) {
      say(`left ${scratch} in place: ${mnt} is still mounted`);
    }
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    cleanup();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    heading('layerfs demo');
    say('A container image is a stack of layers. Each layer only records what changed relative');
    say('to the layers below it: new or modified files, and deletions ("whiteouts"). layerfs');
    say('stacks such layer directories and serves the merged result as one read-only tree,');
    say('exactly as the kernel\'s overlayfs would, through FUSE.');

    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-demo-'));
    if (isRoot && tryRun('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0755', 'layerfs-demo', scratch])) {
      tmpfsMounted = true;
      say(`\nWorking in ${scratch} (a small tmpfs mounted for this demo).`);
    } else {
      say(`\nWorking in ${scratch}.`);
    }

    const layers: Layer[] = [
      { name: 'top', dir: path.join(scratch, 'layers/top') },
      { name: 'middle', dir: path.join(scratch, 'layers/middle') },
      { name: 'base', dir: path.join(scratch, 'layers/base') },
    ];
    const [top, middle, base] = layers as [Layer, Layer, Layer];
    for (const layer of layers) fs.mkdirSync(layer.dir, { recursive: true });
    mnt = path.join(scratch, 'merged');
    fs.mkdirSync(mnt);

    heading('1. Building three layers');
    const formats = buildLayers(base.dir, middle.dir, top.dir);

    heading('2. The layers on disk, bottom to top');
    say(`base   (${base.dir}): the original files`);
    listLayer(base.dir);
    const middleFormat = formats.kernelWhiteout && formats.kernelOpaque ? 'kernel overlayfs format' : 'kernel format where permitted, OCI otherwise';
    say(`\nmiddle (${middle.dir}): ${middleFormat}`);
    listLayer(middle.dir);
    say(`\ntop    (${top.dir}): OCI image format`);
    listLayer(top.dir);

    heading('3. Mounting them with layerfs');
    say('lowerdir lists the layers top first, as with mount -t overlay:');
    run(process.execPath, [cli, 'mount', '-o', `lowerdir=${top.dir}:${middle.dir}:${base.dir}`, mnt]);

    heading(`4. The merged tree at ${mnt}`);
    say('Each file shows the layer it comes from; each directory, the layers whose copies');
    say('contribute entries to it.');
    const seen = new Set(listMerged(mnt, layers));

    heading('5. Why it looks like this');
    const whiteoutHow = formats.kernelWhiteout ? 'a whiteout (char device 0:0)' : 'an OCI whiteout (.wh.old.txt)';
    const opaqueHow = formats.kernelOpaque ? 'opaque (xattr trusted.overlay.opaque=y)' : 'opaque (OCI marker .wh..wh..opq)';
    const expectations: Expectation[] = [
      { path: '/etc/os-release', present: true, why: 'only the base layer has it, so it shows through unchanged' },
      { path: '/etc/motd', present: true, why: 'added by the top layer; /etc merges base and top' },
      { path: '/app/config.json', present: true, why: 'both base and middle have it: the higher layer (middle, version 2) wins' },
      { path: '/app/main.js', present: true, why: 'added by the top layer' },
      { path: '/app/old.txt', present: false, why: `middle has ${whiteoutHow} named old.txt, which deletes base's file` },
      { path: '/data/a', present: false, why: `middle's /data is ${opaqueHow}: base's /data/a and /data/b are hidden` },
      { path: '/data/b', present: false, why: 'hidden by the same opaque /data in middle' },
      { path: '/data/c', present: false, why: 'middle added it, but the top layer deletes it with the OCI whiteout .wh.c' },
      { path: '/data/d', present: true, why: 'added by middle (inside its opaque /data), untouched above' },
      { path: '/data/.wh.c', present: false, why: 'whiteout markers themselves never show in the merged tree' },
    ];
    let failures = 0;
    for (const e of expectations) {
      const ok = seen.has(e.path) === e.present;
      if (!ok) failures++;
      say(`  ${ok ? 'ok ' : 'BAD'} ${e.path.padEnd(18)} ${e.present ? 'present' : 'absent '}  ${e.why}`);
    }
    say();
    say('The layers themselves are never modified: layerfs only reads them. Note that the kernel\'s');
    say('overlayfs only understands the kernel format, while layerfs reads whiteouts and opaque');
    say('directories in both formats, in every layer, so image layers unpacked from OCI tarballs');
    say('can be mounted as they are.');
    if (failures > 0) {
      say(`\n${failures} entr${failures === 1 ? 'y differs' : 'ies differ'} from what overlayfs would show.`);
      return 1;
    }
    say('\nEverything is as overlayfs would show it.');
    say(`Try it on your own layers: node bin/layerfs.js mount -o lowerdir=TOP:...:BASE MOUNTPOINT`);
    return 0;
  } catch (err) {
    console.error(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}`);
    if (!isRoot) console.error('(mounting needs root, or read-write access to /dev/fuse and fusermount: try running it as root)');
    return 1;
  } finally {
    cleanup();
  }
}

process.exitCode = main();
