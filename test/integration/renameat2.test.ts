// renameat2 flags through a writable mount, against the kernel's overlayfs: RENAME_NOREPLACE
// refuses an existing name (a lower one, an upper one) and moves onto a free one, as the kernel
// does. RENAME_EXCHANGE is a known divergence (README Limits): the kernel swaps, layerfs says
// EINVAL and changes nothing; recorded, not compared.
import test from 'ava';
import * as fs from 'node:fs';
import { constants } from 'node:os';
import * as path from 'node:path';
import koffi from 'koffi';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { withKernelOverlay, withLayerfs } from '../helpers/mounts.js';

const space = scratch(test);

const libc = koffi.load('libc.so.6');
const renameat2 = libc.func('int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)');
const AT_FDCWD = -100;
const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
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

  const exchange = await withLayerfs(await layout('exchange'), async (mnt) => [rename2(mnt, 'a', 'b', RENAME_EXCHANGE), ...tree(mnt)]);
  t.log(`RENAME_EXCHANGE on layerfs (known divergence): ${exchange.join(' | ')}`);
  t.deepEqual(exchange, ['EINVAL', 'a=lower a\n', 'b=lower b\n'], 'refused, and nothing changed');
});
