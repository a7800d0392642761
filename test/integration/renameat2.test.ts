// renameat2 flags through a writable mount, against the kernel's overlayfs: RENAME_NOREPLACE
// refuses an existing name (a lower one, an upper one) and moves onto a free one, as the kernel
// does. RENAME_EXCHANGE swaps lower and upper files and upper-only directories, marks a
// directory opaque where it lands beside lower entries, and refuses to move a directory that a
// lower layer has (EXDEV), as the kernel does without redirect_dir (D61). RENAME_WHITEOUT is
// refused (EINVAL) by both.
import test from 'ava';
import * as fs from 'node:fs';
import { constants } from 'node:os';
import * as path from 'node:path';
import koffi from 'koffi';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { withKernelOverlay, withLayerfs } from '../helpers/mounts.js';
import { dumpXattrs } from '../helpers/tree.js';

const space = scratch(test);

const libc = koffi.load('libc.so.6');
const renameat2 = libc.func('int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)');
const AT_FDCWD = -100;
const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
const RENAME_WHITEOUT = 4;
const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([k, v]) => [v, k]));

function rename2(mnt: string, from: string, to: string, flags: number): string {
  const r = renameat2(AT_FDCWD, path.join(mnt, from), AT_FDCWD, path.join(mnt, to), flags) as number;
  return r === 0 ? 'ok' : (ERRNO_NAMES.get(koffi.errno()) ?? `errno ${koffi.errno()}`);
}

/** Every name in the mount with its content, sorted. */
function tree(mnt: string): string[] {
  return fs.readdirSync(mnt).sort().map((n) => `${n}=${fs.readFileSync(path.join(mnt, n), 'utf8')}`);
}

async function steps(mnt: string): Promise<string[]> {
  fs.writeFileSync(path.join(mnt, 'up'), 'upper\n');
  return [
    `lower onto lower: ${rename2(mnt, 'a', 'b', RENAME_NOREPLACE)}`,
    `upper onto lower: ${rename2(mnt, 'up', 'b', RENAME_NOREPLACE)}`,
    `lower onto upper: ${rename2(mnt, 'a', 'up', RENAME_NOREPLACE)}`,
    `lower onto free: ${rename2(mnt, 'a', 'c', RENAME_NOREPLACE)}`,
    `upper onto a name just freed: ${rename2(mnt, 'up', 'a', RENAME_NOREPLACE)}`,
    ...tree(mnt),
  ];
}

test('renameat2 RENAME_NOREPLACE through a writable mount does what it does on the kernel overlayfs', async (t) => {
  if (!requireMountCapable(t)) return;
  const layout = async (label: string): Promise<{ lowers: string[]; upper: string; work: string }> => {
    const root = await space.dir(label);
    const [lower, upper, work] = ['lower', 'upper', 'work'].map((d) => path.join(root, d)) as [string, string, string];
    for (const d of [lower, upper, work]) fs.mkdirSync(d);
    fs.writeFileSync(path.join(lower, 'a'), 'lower a\n');
    fs.writeFileSync(path.join(lower, 'b'), 'lower b\n');
    return { lowers: [lower], upper, work };
  };
  const kernel = await withKernelOverlay(await layout('kernel'), steps);
  const ours = await withLayerfs(await layout('layerfs'), steps);
  // The oracle must refuse and allow, or the comparison proves little.
  t.is(kernel[0], 'lower onto lower: EEXIST');
  t.is(kernel[3], 'lower onto free: ok');
  t.deepEqual(ours, kernel);
});

/** Every entry under dir, depth first, with its content (files), target (links) or kind. */
function deepTree(dir: string, rel = ''): string[] {
  return fs.readdirSync(path.join(dir, rel)).sort().flatMap((n) => {
    const p = path.join(rel, n);
    const st = fs.lstatSync(path.join(dir, p));
    if (st.isDirectory()) return [`${p}/`, ...deepTree(dir, p)];
    if (st.isFile()) return [`${p}=${fs.readFileSync(path.join(dir, p), 'utf8')}`];
    if (st.isCharacterDevice()) return [`${p} (char ${st.rdev})`];
    return [`${p} (${st.mode.toString(8)})`];
  });
}

test('renameat2 RENAME_EXCHANGE through a writable mount does what it does on the kernel overlayfs', async (t) => {
  if (!requireMountCapable(t)) return;
  const layout = async (label: string): Promise<{ lowers: string[]; upper: string; work: string }> => {
    const root = await space.dir(`x-${label}`);
    const [lower, upper, work] = ['lower', 'upper', 'work'].map((d) => path.join(root, d)) as [string, string, string];
    for (const d of [lower, upper, work]) fs.mkdirSync(d);
    fs.writeFileSync(path.join(lower, 'a'), 'lower a\n');
    fs.writeFileSync(path.join(lower, 'b'), 'lower b\n');
    fs.mkdirSync(path.join(lower, 'ld'));
    fs.writeFileSync(path.join(lower, 'ld', 'x'), 'lower ld/x\n');
    fs.mkdirSync(path.join(lower, 'sub'));
    fs.writeFileSync(path.join(lower, 'sub', 'y'), 'lower sub/y\n');
    return { lowers: [lower], upper, work };
  };
  const steps = async (mnt: string): Promise<string[]> => {
    const at = (p: string): string => path.join(mnt, p);
    const out: string[] = [];
    const step = (label: string, from: string, to: string): void => {
      out.push(`${label}: ${rename2(mnt, from, to, RENAME_EXCHANGE)}`);
    };
    step('two lower files', 'a', 'b');
    fs.writeFileSync(at('up'), 'upper\n');
    step('upper file, lower file', 'up', 'a');
    // An open file follows its content to the other name.
    const fd = fs.openSync(at('up'), 'r+');
    step('again, one of them open', 'a', 'up');
    fs.writeSync(fd, 'LOWER', 0);
    fs.closeSync(fd);
    fs.mkdirSync(at('nd'));
    fs.writeFileSync(at('nd/in'), 'in nd\n');
    step('upper-only directory, lower file', 'nd', 'b');
    fs.mkdirSync(at('nd2'));
    step('upper-only directory into a lower directory', 'nd2', 'sub/y');
    step('directory a lower layer has', 'ld', 'a');
    step('a name that is not there', 'missing', 'a');
    out.push(`RENAME_WHITEOUT: ${rename2(mnt, 'a', 'w', RENAME_WHITEOUT)}`);
    step('lower file, upper file in a lower directory', 'ld/x', 'nd2');
    out.push(...deepTree(mnt));
    return out;
  };
  const kdirs = await layout('kernel');
  const ldirs = await layout('layerfs');
  const kernel = await withKernelOverlay(kdirs, steps);
  const ours = await withLayerfs(ldirs, steps);
  // The oracle must swap, and refuse, or the comparison proves little.
  t.is(kernel[0], 'two lower files: ok');
  t.true(kernel.includes('directory a lower layer has: EXDEV'), kernel.join('\n'));
  t.true(kernel.includes('RENAME_WHITEOUT: EINVAL'), kernel.join('\n'));
  t.true(kernel.includes('b/in=in nd\n'), 'the directory now stands at the lower file\'s name');
  t.deepEqual(ours, kernel);
  // In the upper: the same entries, and opaque where the kernel made a directory opaque.
  const opaque = async (upper: string): Promise<string[]> =>
    [...(await dumpXattrs(upper)).map].filter(([, x]) => x['trusted.overlay.opaque'] !== undefined).map(([p, x]) => `${p}: ${x['trusted.overlay.opaque']}`).sort();
  t.deepEqual(deepTree(ldirs.upper), deepTree(kdirs.upper));
  t.deepEqual(await opaque(ldirs.upper), await opaque(kdirs.upper));
});
