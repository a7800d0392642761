// src/host/fs.ts rmTree (rm -rf), which the union uses to remove an emptied upper directory with
// the whiteouts it still holds, a scratch tree, a failed copy's leftovers: whatever the tree
// holds, it is gone afterwards, and a missing path is no error. Flat directories are removed on
// the calling thread, others by Node's walk: both kinds are here, and the bound between them.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { rmTree } from '../../src/host/fs.js';
import { mknod } from '../../src/host/libc.js';
import type { RealPath } from '../../src/path.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-host-rm-'));
test.after.always(() => spawnSync('rm', ['-rf', dir]));
const R = (p: string): RealPath => p as RealPath;

/** A directory of `n` entries of every kind but directories: files, symlinks, fifos, whiteouts (as root). */
function flat(name: string, n: number): string {
  const d = path.join(dir, name);
  fs.mkdirSync(d);
  for (let i = 0; i < n; i++) {
    const p = path.join(d, `e${i}`);
    switch (i % 4) {
      case 0: fs.writeFileSync(p, 'x'); break;
      case 1: fs.symlinkSync('/nonexistent', p); break;
      case 2: spawnSync('mkfifo', [p]); break;
      default:
        try {
          mknod(R(p), fs.constants.S_IFCHR | 0o600, 0); // a whiteout of the kernel's format
        } catch {
          fs.writeFileSync(p, ''); // not root
        }
    }
  }
  return d;
}

test('rmTree removes a directory of files, links, fifos and whiteouts, a large one too', async (t) => {
  for (const [name, n] of [['small', 300], ['large', 5000]] as const) {
    const d = flat(name, n);
    t.is(fs.readdirSync(d).length, n);
    await rmTree(R(d));
    t.false(fs.existsSync(d), name);
  }
});

test('rmTree removes a tree with directories inside, a single file, and nothing where nothing is', async (t) => {
  const d = flat('tree', 20);
  fs.mkdirSync(path.join(d, 'sub', 'deeper'), { recursive: true });
  fs.writeFileSync(path.join(d, 'sub', 'deeper', 'f'), 'y');
  await rmTree(R(d));
  t.false(fs.existsSync(d));
  const f = path.join(dir, 'file');
  fs.writeFileSync(f, 'z');
  await rmTree(R(f));
  t.false(fs.existsSync(f));
  const link = path.join(dir, 'link-to-dir');
  fs.mkdirSync(path.join(dir, 'target'));
  fs.writeFileSync(path.join(dir, 'target', 'kept'), 'k');
  fs.symlinkSync(path.join(dir, 'target'), link);
  await rmTree(R(link));
  t.false(fs.existsSync(link));
  t.is(fs.readFileSync(path.join(dir, 'target', 'kept'), 'utf8'), 'k', 'a symlink is removed, not followed');
  await t.notThrowsAsync(rmTree(R(path.join(dir, 'missing'))));
});
