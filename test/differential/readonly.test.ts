// Differential tests: layerfs vs the kernel's overlayfs on read-only layer sets.
//
// Every case (cases.ts) is built twice: in the kernel's on-disk format and in the OCI format. The
// kernel oracle mounts the kernel-format layers (for OCI sets: copies converted by ociToKernel);
// layerfs mounts the layers as built (for OCI sets: the OCI originals). Then:
//   1. kernel vs model (cases.ts/model.ts): checks the TEST INFRASTRUCTURE (builder, snapshot, mount
//      helper, the case's intent); a failure here is not a layerfs bug;
//   2. kernel vs layerfs snapshots must be equal (see tree.ts for what is and is not compared), and
//      the same paths must share inode numbers (hard links; no false sharing), stable over time;
//   3. spot checks: `ls -AR` listings, reads at offsets, absent paths, invariants (no marker names,
//      no whiteout devices, no trusted.overlay.* xattrs), and write attempts (EROFS) with the same
//      outcome as the kernel's, after which both views must be unchanged.
//
// Known kernel quirk handled here: in a directory that exists in ONE layer only, the kernel's readdir
// lists whiteouts ("phantoms": lstat gives ENOENT). Those are dropped from the kernel's side before
// comparing, and layerfs must list none.
//
// Run: cd /work/main && npx tsc -p . && npx ava --config ava.mount.config.js dist/test/differential/readonly.test.js
// LAYERFS_DIFF_SUBJECT=kernel runs everything with a second kernel mount in place of layerfs (to
// validate the suite itself while layerfs cannot mount). LAYERFS_DIFF_CASES=name1,name2 selects cases.

import test from 'ava';
import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { buildLayers, ociSetToKernel, type BuiltLayers, type Entry, type LayerFormat } from '../helpers/layers.js';
import { withKernelOverlay, withLayerfs } from '../helpers/mounts.js';
import { diffNodes, diffSnapshots, dinoMismatches, inodeGroupDiffs, inodeStability, statNode, snapshot, type Snapshot, type SnapNode } from '../helpers/tree.js';
import { BIG_TOTAL, CASES, bigDirLayers, type Case } from './cases.js';
import { errnoOf, invariantViolations, lsPaths, readAt, readErrors, writeAttempts } from './checks.js';
import { modelSnapshot } from './model.js';

const space = scratch(test);
const SUBJECT = process.env['LAYERFS_DIFF_SUBJECT'] === 'kernel' ? 'kernel' : 'layerfs';
const SUBJECT_LABEL = SUBJECT === 'kernel' ? 'kernel#2' : 'layerfs';
const only = (process.env['LAYERFS_DIFF_CASES'] ?? '').split(',').filter((s) => s !== '');
const selected = (name: string) => only.length === 0 || only.includes(name);
const FORMATS: LayerFormat[] = ['kernel', 'oci'];

function report(t: ExecutionContext, what: string, diffs: string[], note?: string): void {
  if (diffs.length === 0) {
    t.pass();
    return;
  }
  t.fail(`${what}:\n  ${diffs.join('\n  ')}${note ? `\n  (case note: ${note})` : ''}`);
}

/** Remove listed-but-unstatable entries from a kernel snapshot; returns their paths. */
function dropPhantoms(s: Snapshot): string[] {
  const gone: string[] = [];
  for (const [v, n] of s.nodes) if (n.type === 'phantom') gone.push(v);
  for (const v of gone) s.nodes.delete(v);
  return gone;
}

interface Prepared {
  caseDir: string;
  built: BuiltLayers;
  /** What the kernel mounts (kernel format). */
  kernelDirs: string[];
  /** What the subject mounts. */
  subjectDirs: string[];
}

async function prepare(t: ExecutionContext, c: Pick<Case, 'name' | 'layers' | 'setup' | 'separateFs' | 'viaSymlinks'>, format: LayerFormat): Promise<Prepared> {
  const caseDir = await space.dir(`${c.name}-${format}`);
  // Own tmpfs mounts (separateFs) are unmounted before the case directory is removed.
  const ownMounts: string[] = [];
  t.teardown(() => {
    for (const m of ownMounts.reverse()) {
      if (spawnSync('umount', [m]).status !== 0) spawnSync('umount', ['-l', m]);
    }
    fs.rmSync(caseDir, { recursive: true, force: true });
  });
  const ownTmpfs = (dir: string) => {
    fs.mkdirSync(dir, { recursive: true });
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'layerfs-layer', dir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`mounting a tmpfs on ${dir}: ${r.stderr.trim()}`);
    ownMounts.push(dir);
  };
  const layersRoot = path.join(caseDir, 'layers');
  fs.mkdirSync(layersRoot);
  const built = await buildLayers(layersRoot, c.layers(), { format, ...(c.separateFs ? { beforeEach: ownTmpfs } : {}) });
  c.setup?.(layersRoot);
  let kernelDirs = format === 'oci'
    ? await ociSetToKernel(built.dirs, path.join(caseDir, 'kernel-format'), c.separateFs ? ownTmpfs : undefined)
    : built.dirs;
  let subjectDirs = SUBJECT === 'kernel' ? kernelDirs : built.dirs;
  if (c.viaSymlinks) {
    // Name every layer through a symlink (relative for even layers, absolute for odd ones).
    const alias = (dirs: string[], tag: string) => dirs.map((d, i) => {
      const aliasDir = path.join(caseDir, `alias-${tag}`);
      fs.mkdirSync(aliasDir, { recursive: true });
      const l = path.join(aliasDir, `link${i}`);
      fs.symlinkSync(i % 2 === 0 ? path.relative(aliasDir, d) : d, l);
      return l;
    });
    const k = alias(kernelDirs, 'kernel');
    subjectDirs = subjectDirs === kernelDirs ? k : alias(subjectDirs, 'subject');
    kernelDirs = k;
  }
  return { caseDir, built, kernelDirs, subjectDirs };
}

function withSubject<T>(dirs: string[], fn: (mnt: string) => Promise<T>): Promise<T> {
  return SUBJECT === 'kernel' ? withKernelOverlay({ lowers: dirs }, fn) : withLayerfs({ lowers: dirs }, fn);
}

async function runCase(t: ExecutionContext, c: Case, format: LayerFormat): Promise<void> {
  if (!requireMountCapable(t)) return;
  const t0 = Date.now();
  const p = await prepare(t, c, format);
  const sopts = { xattrs: c.xattrs ?? true, content: c.content ?? true };
  t.log(`built in ${Date.now() - t0} ms; kernel mounts ${p.kernelDirs.length} layer(s), ${SUBJECT_LABEL} mounts ${SUBJECT === 'kernel' ? 'the same' : format} layers`);

  await withKernelOverlay({ lowers: p.kernelDirs }, async (kmnt) => {
    const ks = await snapshot(kmnt, sopts);
    const phantoms = dropPhantoms(ks);
    if (phantoms.length > 0) {
      t.log(`kernel lists ${phantoms.length} phantom(s) (whiteouts in single-layer dirs), ignored: ${phantoms.join(', ')}`);
      if (!c.kernelPhantoms) t.fail(`unexpected kernel phantoms in case ${c.name}: ${phantoms.join(', ')}`);
    }
    report(t, 'kernel snapshot problems', ks.problems);
    report(t, 'TEST INFRASTRUCTURE: kernel vs model', diffSnapshots(modelSnapshot(p.built, sopts), ks, ['model', 'kernel']), c.note);
    report(t, 'kernel invariants', invariantViolations(ks));

    await withSubject(p.subjectDirs, async (smnt) => {
      const ss = await snapshot(smnt, sopts);
      if (SUBJECT === 'kernel') dropPhantoms(ss);
      report(t, `kernel vs ${SUBJECT_LABEL} snapshot (${format} layers)`, diffSnapshots(ks, ss, ['kernel', SUBJECT_LABEL]), c.note);
      report(t, `${SUBJECT_LABEL} invariants`, invariantViolations(ss));
      report(t, `inode sharing (hard links / no false sharing), kernel vs ${SUBJECT_LABEL}`, inodeGroupDiffs(ks, ss, ['kernel', SUBJECT_LABEL]));
      report(t, `${SUBJECT_LABEL}: readdir's d_ino is lstat's st_ino`, await dinoMismatches(smnt));

      // ls -AR must show exactly the snapshot's entries (kernel: plus its phantoms).
      const kls = await lsPaths(kmnt);
      const sls = await lsPaths(smnt);
      const expected = new Set(ks.nodes.keys());
      const lsDiff: string[] = [];
      // (With LAYERFS_DIFF_SUBJECT=kernel the subject lists the same phantoms as the oracle.)
      for (const v of sls.paths) if (!expected.has(v) && !(SUBJECT === 'kernel' && phantoms.includes(v))) lsDiff.push(`${v}: shown by ls on ${SUBJECT_LABEL} only`);
      for (const v of expected) if (!sls.paths.has(v)) lsDiff.push(`${v}: missing from ls on ${SUBJECT_LABEL}`);
      for (const v of sls.paths) if (path.posix.basename(v).startsWith('.wh.')) lsDiff.push(`${v}: ls shows a marker name`);
      if (sls.code !== 0) lsDiff.push(`ls exited ${sls.code} on ${SUBJECT_LABEL}: ${sls.stderr.split(smnt).join('MNT').trim().slice(0, 500)}`);
      for (const v of kls.paths) if (!expected.has(v) && !phantoms.includes(v)) lsDiff.push(`${v}: (infrastructure) kernel ls shows it, kernel snapshot does not`);
      report(t, 'ls -AR', lsDiff.slice(0, 50));

      // Reads at offsets: explicit ones, and a few per small file.
      const readDiff: string[] = [];
      const reads: [string, number, number][] = [...(c.reads ?? [])];
      let nfiles = 0;
      for (const [v, n] of ks.nodes) {
        if (n.type !== 'file' || (n.size ?? 0) > 64 << 20 || nfiles++ >= 40) continue;
        const size = n.size ?? 0;
        for (const off of [0, 1, Math.floor(size / 2), Math.max(0, size - 1), size, size + 5]) reads.push([v, off, 4099]);
      }
      for (const [v, off, len] of reads) {
        const a = await readAt(kmnt + v, off, len);
        const b = await readAt(smnt + v, off, len);
        if (a !== b) readDiff.push(`read ${v} @${off} len ${len}: kernel ${a.slice(0, 200)} vs ${SUBJECT_LABEL} ${b.slice(0, 200)}`);
      }
      report(t, 'reads at offsets', readDiff.slice(0, 50));

      // Paths that must not exist (nothing from outside the branches, nothing whited out).
      const absDiff: string[] = [];
      for (const v of c.absent ?? []) {
        const a = await errnoOf(() => fsp.lstat(kmnt + v));
        const b = await errnoOf(() => fsp.lstat(smnt + v));
        if (a !== 'ENOENT' && a !== 'ENOTDIR') absDiff.push(`${v}: (infrastructure) kernel lstat gives ${a}, expected ENOENT/ENOTDIR`);
        if (a !== b) absDiff.push(`${v}: lstat kernel ${a} vs ${SUBJECT_LABEL} ${b}`);
      }
      for (const v of c.absentFollow ?? []) {
        const a = await errnoOf(() => fsp.stat(kmnt + v));
        const b = await errnoOf(() => fsp.stat(smnt + v));
        if (a !== 'ENOENT') absDiff.push(`${v}: (infrastructure) kernel stat gives ${a}, expected ENOENT`);
        if (a !== b) absDiff.push(`${v}: stat kernel ${a} vs ${SUBJECT_LABEL} ${b}`);
      }
      report(t, 'absent paths', absDiff);

      // Reads that must fail: same errno as the kernel (in a few cases only: the targets barely depend
      // on the layer set, and one bug would otherwise fail every case).
      if (c.errorChecks) {
        const kr = await readErrors(kmnt, ks);
        const sr = await readErrors(smnt, ks);
        report(t, 'failing reads', kr.flatMap((k, i) => (sr[i]?.outcome === k.outcome ? [] : [`${k.op}: kernel ${k.outcome} vs ${SUBJECT_LABEL} ${sr[i]?.outcome ?? '(not run)'}`])));
      }

      // Writes on the read-only mount: same outcome as the kernel (EROFS, mostly), views unchanged.
      const kw = await writeAttempts(kmnt, ks);
      const sw = await writeAttempts(smnt, ks);
      const wDiff: string[] = [];
      kw.forEach((k, i) => {
        const s = sw[i];
        if (s === undefined || s.outcome !== k.outcome) wDiff.push(`${k.op}: kernel ${k.outcome} vs ${SUBJECT_LABEL} ${s?.outcome ?? '(not run)'}`);
        if (k.outcome === 'ok' || k.outcome.startsWith('exit 0')) wDiff.push(`${k.op}: (infrastructure) the kernel allowed a write`);
      });
      report(t, 'write attempts on a read-only mount', wDiff);
      const ks2 = await snapshot(kmnt, sopts);
      dropPhantoms(ks2);
      const ss2 = await snapshot(smnt, sopts);
      if (SUBJECT === 'kernel') dropPhantoms(ss2);
      report(t, `${SUBJECT_LABEL} view changed after write attempts`, diffSnapshots(ss, ss2, ['before', 'after']));
      report(t, 'kernel view changed after write attempts (infrastructure)', diffSnapshots(ks, ks2, ['before', 'after']));
      report(t, `${SUBJECT_LABEL} inode numbers unstable between two snapshots`, inodeStability(ss, ss2));
      report(t, 'kernel inode numbers unstable (infrastructure)', inodeStability(ks, ks2));
    });
  });
  t.log(`${c.name} [${format}] done in ${Date.now() - t0} ms`);
}

for (const c of CASES) {
  for (const format of FORMATS) {
    if (!selected(c.name)) continue;
    test(`${c.name} [${format}]`, (t) => runCase(t, c, format));
  }
}

// 100k entries in one directory, split across two layers, with 1000 whiteouts: compare the full
// listing and a sample of stats (a full snapshot would take minutes through FUSE).
for (const format of FORMATS) {
  if (!selected('bigdir')) continue;
  test(`bigdir-100k [${format}]`, async (t) => {
    if (!requireMountCapable(t)) return;
    t.timeout(240_000);
    const t0 = Date.now();
    const p = await prepare(t, { name: 'bigdir', layers: bigDirLayers }, format);
    t.log(`built in ${Date.now() - t0} ms`);
    const model = modelSnapshot(p.built, { xattrs: false, content: true });
    const expectedNames = [...model.nodes.keys()].filter((v) => v.startsWith('/big/')).map((v) => v.slice(5)).sort();
    t.is(expectedNames.length, BIG_TOTAL - 1000, 'model size');

    await withKernelOverlay({ lowers: p.kernelDirs }, async (kmnt) => {
      const t1 = Date.now();
      const kNames = (await fsp.readdir(path.join(kmnt, 'big'))).sort();
      t.log(`kernel readdir: ${kNames.length} names in ${Date.now() - t1} ms`);
      report(t, 'TEST INFRASTRUCTURE: kernel listing vs model', listDiff(expectedNames, kNames, 'model', 'kernel'));

      await withSubject(p.subjectDirs, async (smnt) => {
        const t2 = Date.now();
        const sNamesRaw = await fsp.readdir(path.join(smnt, 'big'));
        t.log(`${SUBJECT_LABEL} readdir: ${sNamesRaw.length} names in ${Date.now() - t2} ms`);
        const dups = sNamesRaw.length - new Set(sNamesRaw).size;
        if (dups > 0) t.fail(`${SUBJECT_LABEL} listed ${dups} duplicate name(s)`);
        report(t, `kernel vs ${SUBJECT_LABEL} listing of big/`, listDiff(kNames, sNamesRaw.sort(), 'kernel', SUBJECT_LABEL));

        // Sample: every 97th visible name, every overlapping/whited-out boundary, some whiteouts.
        const sample = new Set<string>();
        kNames.forEach((n, i) => { if (i % 97 === 0) sample.add(n); });
        for (const i of [0, 1, 49, 50, 51, 49_999, 50_000, 50_001, 59_999, 60_000, 99_999, 1000, 55_000]) sample.add(`f${String(i).padStart(6, '0')}`);
        const t3 = Date.now();
        const sd: string[] = [];
        const sopts = { content: true };
        for (const n of sample) {
          const a: SnapNode = await statNode(path.join(kmnt, 'big', n), sopts);
          const b: SnapNode = await statNode(path.join(smnt, 'big', n), sopts);
          for (const d of diffNodes(a, b, ['kernel', SUBJECT_LABEL])) sd.push(`big/${n}: ${d}`);
        }
        t.log(`${sample.size} sampled stats in ${Date.now() - t3} ms`);
        report(t, 'sampled stats in big/', sd.slice(0, 50));
        // The root and big/ themselves.
        for (const v of ['', 'big']) {
          const a = await statNode(path.join(kmnt, v), sopts);
          const b = await statNode(path.join(smnt, v), sopts);
          report(t, `stat /${v}`, diffNodes(a, b, ['kernel', SUBJECT_LABEL]));
        }
      });
    });
    t.log(`bigdir [${format}] done in ${Date.now() - t0} ms`);
  });
}

// A directory of many listing pages, read whole before anything in it is stat-ed, as fts does
// (du, rm -r, tar c): since D77 its later pages carry the entries' attributes (the kernel asks
// each page as READDIRPLUS), so those stats are answered from what the listing gave. Each entry's
// attributes must be the kernel's.
for (const format of FORMATS) {
  if (!selected('pages')) continue;
  test(`pages: a listing read whole, then stat-ed entry by entry [${format}]`, async (t) => {
    if (!requireMountCapable(t)) return;
    const name = (i: number) => `entry-with-a-longish-name-${String(i).padStart(4, '0')}`;
    const top: Entry[] = [];
    const bottom: Entry[] = [];
    for (let i = 0; i < 900; i++) bottom.push({ type: 'file', path: `d/${name(i)}`, content: `b${i}\n`, mode: 0o644 });
    for (let i = 600; i < 1200; i++) top.push({ type: 'file', path: `d/${name(i)}`, content: `top ${i}\n`, mode: 0o600 });
    for (let i = 0; i < 600; i++) {
      if (i % 50 === 1) top.push({ type: 'dir', path: `d/${name(i)}`, mode: 0o750 });
      else if (i % 7 === 0) top.push({ type: 'whiteout', path: `d/${name(i)}` });
    }
    const p = await prepare(t, { name: `pages`, layers: () => [{ entries: top }, { entries: bottom }] }, format);
    const walk = async (mnt: string): Promise<Map<string, string>> => {
      const dir = path.join(mnt, 'd');
      const names = await fsp.readdir(dir);
      const out = new Map<string, string>();
      for (const n of names) {
        const st = await fsp.lstat(path.join(dir, n));
        out.set(n, `mode=${st.mode.toString(8)} size=${st.size} nlink=${st.nlink} uid=${st.uid} mtime=${st.mtimeMs}`);
      }
      return out;
    };
    await withKernelOverlay({ lowers: p.kernelDirs }, async (kmnt) => {
      const k = await walk(kmnt);
      t.true(k.size > 1000, `${k.size} entries`);
      await withSubject(p.subjectDirs, async (smnt) => {
        const s = await walk(smnt);
        const d: string[] = [];
        for (const [n, a] of k) if (s.get(n) !== a) d.push(`${n}: kernel ${a}, ${SUBJECT_LABEL} ${s.get(n) ?? 'absent'}`);
        for (const n of s.keys()) if (!k.has(n)) d.push(`${n}: only in ${SUBJECT_LABEL}`);
        report(t, 'entries stat-ed after the whole listing', d.slice(0, 50));
      });
    });
  });
}

function listDiff(a: string[], b: string[], la: string, lb: string): string[] {
  const sa = new Set(a);
  const sb = new Set(b);
  const out: string[] = [];
  for (const x of a) if (!sb.has(x)) out.push(`${x}: only in ${la}`);
  for (const x of b) if (!sa.has(x)) out.push(`${x}: only in ${lb}`);
  if (out.length > 50) return [...out.slice(0, 50), `... and ${out.length - 50} more`];
  return out;
}
