// A lower file opened with O_TRUNC, or cut by truncate(2), is copied up with only the data the
// cut keeps (D49), as on the kernel's overlayfs: overwriting a large lower file needs neither the
// time to copy it nor the room for it. The kernel's overlayfs is the oracle.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { withKernelOverlay, withLayerfs, type LayerDirs } from '../helpers/mounts.js';

// Room for the lower file once, not twice: a copy of its data into the upper fails with ENOSPC.
const space = scratch(test, { size: '700m' });
const BIG = 400 << 20;

interface Outcome {
  readonly shown: Record<string, string>;
  readonly upper: Record<string, number>;
}

/** truncate(2) by path (coreutils' truncate opens the file and cuts the fd). */
function truncatePath(p: string, size: number): void {
  const r = spawnSync('perl', ['-e', 'truncate($ARGV[0], $ARGV[1]) or die "$!\\n"', p, String(size)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`truncate ${p} ${size}: ${r.stderr.trim()}`);
}

async function scenario(mnt: string, upper: string): Promise<Outcome> {
  fs.writeFileSync(path.join(mnt, 'big'), 'new\n'); // open(O_WRONLY | O_CREAT | O_TRUNC)
  truncatePath(path.join(mnt, 'short'), 100);
  truncatePath(path.join(mnt, 'longer'), 3 << 20);
  truncatePath(path.join(mnt, 'empty'), 0);
  const shown: Record<string, string> = {};
  const up: Record<string, number> = {};
  for (const f of ['big', 'short', 'longer', 'empty']) {
    const b = fs.readFileSync(path.join(mnt, f));
    shown[f] = `${b.length}:${b.subarray(0, 16).toString('hex')}:${b.subarray(-16).toString('hex')}`;
    up[f] = fs.statSync(path.join(upper, f)).size;
  }
  return { shown, upper: up };
}

test('O_TRUNC and truncate(2) copy up only what the cut keeps, as on the kernel overlay', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('trunc');
  const d = (n: string): string => path.join(root, n);
  for (const n of ['lower', 'k-upper', 'k-work', 'l-upper', 'l-work']) fs.mkdirSync(d(n));
  const fd = fs.openSync(d('lower/big'), 'w');
  const chunk = Buffer.alloc(16 << 20, 'b');
  for (let at = 0; at < BIG; at += chunk.length) fs.writeSync(fd, chunk, 0, chunk.length, at);
  fs.closeSync(fd);
  const mib = Buffer.alloc(1 << 20);
  for (let i = 0; i < mib.length; i++) mib[i] = (i * 7 + 3) & 0xff;
  for (const f of ['short', 'longer', 'empty']) fs.writeFileSync(d(`lower/${f}`), mib);

  const dirs = (p: string): LayerDirs => ({ lowers: [d('lower')], upper: d(`${p}-upper`), work: d(`${p}-work`) });
  const kernel = await withKernelOverlay(dirs('k'), (m) => scenario(m, d('k-upper')));
  const ours = await withLayerfs(dirs('l'), (m) => scenario(m, d('l-upper')));
  t.deepEqual(ours, kernel);
  t.deepEqual(ours.upper, { big: 4, short: 100, longer: 3 << 20, empty: 0 });
  t.is(fs.statSync(d('lower/big')).size, BIG, 'the lower is untouched');
});
