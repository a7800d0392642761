// The layer round trip on random changes (issue 5): an image's layers are unpacked as lowers and
// mounted with an empty upper; a random sequence of changes is made through the mount; then
//   - `layerfs commit UPPER` gives a layer that, applied with `--flatten` onto the image's layers
//     flattened one after another, is exactly the merged view (every path, type, mode, owner,
//     mtime, content, link target, xattr, and the hard links made through the mount);
//   - `layerfs diff UPPER --lower ...` lists exactly the changes between the merged view before
//     and after, as `docker diff` reports them (see expectedChanges).
// The sequences come from fast-check with a fixed seed (LAYERFS_ROUNDTRIP_SEED, _RUNS to vary);
// a failure is shrunk to a short sequence and printed with the differences it shows.
import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { applyLayer } from '../../src/layer/apply.js';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { buildLayers, DEFAULT_MTIME, sampleLayers } from '../helpers/images.js';
import { layerfsCli, lowerdirValue, withLayerfs } from '../helpers/mounts.js';
import { diffSnapshots, snapshot, type SnapNode, type Snapshot } from '../helpers/tree.js';

const SEED = Number(process.env['LAYERFS_ROUNDTRIP_SEED'] ?? '20261205');
const RUNS = Number(process.env['LAYERFS_ROUNDTRIP_RUNS'] ?? '10');

const space = scratch(test);

/** Names the operations pick from: the image's paths (filled in at run time) and new ones. */
const NEW_NAMES = ['n1', 'n2', 'etc/n3', 'usr/bin/n4', 'newd', 'newd/n5', 'var/cache/n6', 'opt/file-then-dir/n7'];

type Op =
  | { op: 'write'; p: number; n: number }
  | { op: 'append'; p: number }
  | { op: 'truncate'; p: number; len: number }
  | { op: 'mkdir'; p: number }
  | { op: 'rm'; p: number }
  | { op: 'mv'; p: number; to: number }
  | { op: 'chmod'; p: number; mode: number }
  | { op: 'chown'; p: number; uid: number }
  | { op: 'symlink'; p: number; target: string }
  | { op: 'link'; p: number; to: number }
  | { op: 'utimes'; p: number; k: number }
  | { op: 'xattr'; p: number; value: string }
  | { op: 'mkfifo'; p: number };

// Path indexes are taken modulo the pool's size, so one arbitrary serves any image.
const ix = fc.nat({ max: 1000 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('write' as const), p: ix, n: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ op: fc.constant('append' as const), p: ix }),
  fc.record({ op: fc.constant('truncate' as const), p: ix, len: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ op: fc.constant('mkdir' as const), p: ix }),
  fc.record({ op: fc.constant('rm' as const), p: ix }),
  fc.record({ op: fc.constant('mv' as const), p: ix, to: ix }),
  fc.record({ op: fc.constant('chmod' as const), p: ix, mode: fc.constantFrom(0o600, 0o640, 0o700, 0o755, 0o4755) }),
  fc.record({ op: fc.constant('chown' as const), p: ix, uid: fc.constantFrom(0, 7, 1000) }),
  fc.record({ op: fc.constant('symlink' as const), p: ix, target: fc.constantFrom('tool', '../etc/passwd', '/nowhere') }),
  fc.record({ op: fc.constant('link' as const), p: ix, to: ix }),
  fc.record({ op: fc.constant('utimes' as const), p: ix, k: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ op: fc.constant('xattr' as const), p: ix, value: fc.constantFrom('a', 'bb', '') }),
  fc.record({ op: fc.constant('mkfifo' as const), p: ix }),
);

function describe(o: Op, pool: readonly string[]): string {
  const at = (i: number): string => pool[i % pool.length]!;
  switch (o.op) {
    case 'write': return `write ${at(o.p)} (${o.n * 5} bytes)`;
    case 'append': return `append ${at(o.p)}`;
    case 'truncate': return `truncate ${at(o.p)} ${o.len}`;
    case 'mkdir': return `mkdir ${at(o.p)}`;
    case 'rm': return `rm -rf ${at(o.p)}`;
    case 'mv': return `mv ${at(o.p)} ${at(o.to)}`;
    case 'chmod': return `chmod ${o.mode.toString(8)} ${at(o.p)}`;
    case 'chown': return `chown -h ${o.uid} ${at(o.p)}`;
    case 'symlink': return `ln -s ${o.target} ${at(o.p)}`;
    case 'link': return `ln ${at(o.p)} ${at(o.to)}`;
    case 'utimes': return `touch -d @${(DEFAULT_MTIME + o.k * 86_400_000 * 31) / 1000} ${at(o.p)}`;
    case 'xattr': return `setfattr -h -n user.rt -v '${o.value}' ${at(o.p)}`;
    case 'mkfifo': return `mkfifo ${at(o.p)}`;
  }
}

const WRITE = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_NONBLOCK;

/**
 * Runs one operation through the mount; a refused one (ENOENT, EEXIST, ...) just changes nothing.
 * Returns whether it was carried out.
 */
async function apply(mnt: string, o: Op, pool: readonly string[]): Promise<boolean> {
  const at = (i: number): string => path.join(mnt, pool[i % pool.length]!);
  const p = at(o.p);
  try {
    switch (o.op) {
      // O_NONBLOCK: opening a fifo made by an earlier step fails (ENXIO) instead of waiting for
      // a reader forever.
      case 'write': await fsp.writeFile(p, 'data\n'.repeat(o.n), { flag: WRITE | fs.constants.O_TRUNC }); break;
      case 'append': await fsp.appendFile(p, '+', { flag: WRITE | fs.constants.O_APPEND }); break;
      case 'truncate': await fsp.truncate(p, o.len); break;
      case 'mkdir': await fsp.mkdir(p); break;
      case 'rm': await fsp.rm(p, { recursive: true }); break;
      case 'mv': await fsp.rename(p, at(o.to)); break;
      case 'chmod': await fsp.chmod(p, o.mode); break;
      case 'chown': await fsp.lchown(p, o.uid, o.uid); break;
      case 'symlink': await fsp.symlink(o.target, p); break;
      case 'link': await fsp.link(p, at(o.to)); break;
      case 'utimes': {
        const d = new Date(DEFAULT_MTIME + o.k * 86_400_000 * 31);
        await fsp.lutimes(p, d, d);
        break;
      }
      case 'xattr': return spawnSync('setfattr', ['-h', '-n', 'user.rt', '-v', o.value === '' ? '""' : o.value, p]).status === 0;
      case 'mkfifo': return spawnSync('mkfifo', [p]).status === 0;
    }
    return true;
  } catch (e) {
    if (typeof (e as NodeJS.ErrnoException).code !== 'string') throw e;
    return false;
  }
}

async function snap(root: string): Promise<Snapshot> {
  const s = await snapshot(root, { xattrs: true, content: true });
  // A mount's root shows its upper's root, a flattened tree the directory it was made in.
  s.nodes.delete('/');
  return s;
}

const parentOf = (p: string): string => path.posix.dirname(p);

// What `docker diff` counts as a change of an entry that is there before and after.
const COMPARED: (keyof SnapNode)[] = ['type', 'mode', 'uid', 'gid', 'mtimeMs', 'size', 'target', 'rdev'];
function differs(a: SnapNode, b: SnapNode): boolean {
  return COMPARED.some((f) => a[f] !== b[f]) || JSON.stringify(a.xattrs ?? {}) !== JSON.stringify(b.xattrs ?? {});
}

/**
 * The changes between two merged views, as `docker diff` lists them: A for a path only after;
 * D for a path only before whose parent is still a directory (a deleted directory is one line);
 * C for a path in both that differs, and for every directory with a change below it.
 */
function expectedChanges(before: Snapshot, after: Snapshot): string[] {
  const out = new Map<string, string>();
  for (const [p, n] of after.nodes) {
    const b = before.nodes.get(p);
    if (b === undefined) out.set(p, 'A');
    else if (differs(b, n)) out.set(p, 'C');
  }
  for (const p of before.nodes.keys()) {
    if (after.nodes.has(p)) continue;
    const parent = parentOf(p);
    if (parent === '/' || after.nodes.get(parent)?.type === 'dir') out.set(p, 'D');
  }
  for (const p of [...out.keys()]) {
    for (let d = parentOf(p); d !== '/'; d = parentOf(d)) {
      if (!out.has(d)) out.set(d, 'C');
    }
  }
  return [...out].map(([p, k]) => `${k} ${p}`).sort();
}

interface Image {
  lowers: string[];
  tars: Buffer[];
  pool: string[];
}

async function unpackImage(dir: string): Promise<Image> {
  const built = await buildLayers({ layers: sampleLayers() });
  const tars = built.layers.map((l) => l.tar);
  const lowers: string[] = [];
  for (const [i, tar] of tars.entries()) {
    const d = path.join(dir, `layer${i}`);
    fs.mkdirSync(d, { recursive: true });
    await applyLayer(Readable.from([tar]), d, { whiteout: 'overlay' });
    lowers.unshift(d); // top first
  }
  const flat = path.join(dir, 'flat-image');
  fs.mkdirSync(flat);
  for (const tar of tars) await applyLayer(Readable.from([tar]), flat, { whiteout: 'flatten' });
  const pool = [...(await snap(flat)).nodes.keys()].map((p) => p.slice(1));
  return { lowers, tars, pool: [...pool, ...NEW_NAMES] };
}

interface Outcome {
  problems: string[];
  /** Operations carried out. */
  done: number;
}

async function roundTrip(dir: string, img: Image, ops: readonly Op[]): Promise<Outcome> {
  fs.rmSync(dir, { recursive: true, force: true });
  const upper = path.join(dir, 'upper');
  const work = path.join(dir, 'work');
  fs.mkdirSync(upper, { recursive: true });
  fs.mkdirSync(work);
  const layer = path.join(dir, 'layer.tar');
  const problems: string[] = [];
  let done = 0;
  let before: Snapshot | undefined;
  let after: Snapshot | undefined;
  await withLayerfs({ lowers: img.lowers, upper, work }, async (mnt) => {
    before = await snap(mnt);
    for (const o of ops) if (await apply(mnt, o, img.pool)) done++;
    after = await snap(mnt);
    const c = await layerfsCli(['commit', upper, '-o', layer]);
    if (c.code !== 0) problems.push(`commit exited ${c.code}: ${c.stderr.trim()}`);
  });
  if (problems.length > 0) return { problems, done };

  // commit, then apply --flatten onto the flattened image: the merged view.
  const flat = path.join(dir, 'flat');
  fs.mkdirSync(flat);
  for (const tar of img.tars) await applyLayer(Readable.from([tar]), flat, { whiteout: 'flatten' });
  const a = await layerfsCli(['apply', layer, flat, '--flatten']);
  if (a.code !== 0) return { problems: [`apply --flatten exited ${a.code}: ${a.stderr.trim()}`], done };
  const flattened = await snap(flat);
  // A lower file with several names that one of them is copied up away from keeps its link count
  // under the mount (the kernel's overlayfs shows the same); flattened, the names are apart.
  for (const [p, n] of before!.nodes) {
    if ((n.nlink ?? 1) > 1) {
      delete after!.nodes.get(p)?.nlink;
      delete flattened.nodes.get(p)?.nlink;
    }
  }
  for (const d of diffSnapshots(after!, flattened, ['mount', 'commit+flatten'])) problems.push(`tree: ${d}`);

  // diff with the lowers: exactly the changes between the two merged views.
  const d = await layerfsCli(['diff', upper, '--lower', lowerdirValue(img.lowers)]);
  if (d.code !== 0) return { problems: [...problems, `diff exited ${d.code}: ${d.stderr.trim()}`], done };
  const listed = d.stdout.split('\n').filter((l) => l !== '').sort();
  const expected = expectedChanges(before!, after!);
  for (const l of expected) if (!listed.includes(l)) problems.push(`diff: missing "${l}"`);
  for (const l of listed) if (!expected.includes(l)) problems.push(`diff: unexpected "${l}"`);
  return { problems, done };
}

test('random changes: commit then apply --flatten gives the merged view, and diff lists exactly the changes', async (t: ExecutionContext) => {
  if (!requireMountCapable(t)) return;
  t.timeout(20 * 60_000);
  const root = await space.dir('roundtrip');
  const img = await unpackImage(path.join(root, 'image'));
  let tries = 0;
  let done = 0;
  let total = 0;
  const property = fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25, size: 'max' }), async (ops) => {
    tries++;
    const r = await roundTrip(path.join(root, 'run'), img, ops);
    done += r.done;
    total += ops.length;
    return r.problems.length === 0;
  });
  const out = await fc.check(property, { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: 10 * 60_000, markInterruptAsFailure: false });
  t.log(`${tries} sequences (seed ${SEED}, ${RUNS} runs); ${done} of ${total} operations carried out`);
  t.true(tries >= RUNS);
  t.true(done > total / 4, 'most operations must change something, or the test tests little');
  if (!out.failed) return;
  const ops = (out.counterexample?.[0] ?? []) as Op[];
  const again = await roundTrip(path.join(root, 'shortest'), img, ops);
  t.fail(
    `round trip fails (seed ${SEED}, path ${out.counterexamplePath ?? '?'}, ${out.numShrinks} shrinks); shortest sequence:\n  ` +
      `${ops.map((o) => describe(o, img.pool)).join('\n  ')}\n  ${JSON.stringify(ops)}\nproblems:\n  ${again.problems.join('\n  ')}` +
      (out.errorInstance ? `\nerror: ${String(out.errorInstance)}` : ''),
  );
});

test('the model of docker diff is not empty-handed: known changes give the expected lines', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('roundtrip-known');
  const img = await unpackImage(path.join(root, 'image'));
  const pool = img.pool;
  const idx = (p: string): number => {
    const i = pool.indexOf(p);
    if (i < 0) throw new Error(`${p} is not in the pool`);
    return i;
  };
  const ops: Op[] = [
    { op: 'append', p: idx('etc/passwd') },
    { op: 'rm', p: idx('var') },
    { op: 'mkdir', p: idx('newd') },
    { op: 'write', p: idx('newd/n5'), n: 1 },
    { op: 'mv', p: idx('usr/bin/tool'), to: idx('usr/bin/n4') },
  ];
  const r = await roundTrip(path.join(root, 'run'), img, ops);
  t.deepEqual(r.problems, []);
  t.is(r.done, ops.length);
  const d = await layerfsCli(['diff', path.join(root, 'run', 'upper'), '--lower', lowerdirValue(img.lowers)]);
  t.is(d.stdout, 'C /etc\nC /etc/passwd\nA /newd\nA /newd/n5\nC /usr\nC /usr/bin\nA /usr/bin/n4\nD /usr/bin/tool\nD /var\n');
});
