// The image readers without mounts: docker save (Docker 25+ and older layouts, plain and gzipped
// archives), OCI image layouts (directory and tar, gzip layers, nested indexes and platforms),
// and the refusal of every digest that does not match.
import test from 'ava';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { hashStream } from '../../src/image/digest.js';
import { ImageError } from '../../src/image/errors.js';
import { archiveImageIds, readImage, verifyLayers } from '../../src/image/reader.js';
import { openSource } from '../../src/image/source.js';
import {
  dockerSaveFiles, ociFiles, sampleLayers, writeDockerSave, writeDockerSaveOf, writeOciDir, writeOciTar, writeTar, type ImageOptions,
} from '../helpers/images.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-image-reader-'));
test.after.always(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string): string => path.join(root, `${++n}-${name}`);

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function read(p: string, platform?: string) {
  const src = await openSource(p);
  const info = await readImage(src, platform === undefined ? {} : { platform });
  const verified = await verifyLayers(src, info);
  return { src, info, verified };
}

const base: ImageOptions = { layers: sampleLayers(), tags: ['example/app:1.0'] };

for (const style of ['modern', 'legacy'] as const) {
  test(`docker save (${style}): layers bottom first, diff_ids verified, tags`, async (t) => {
    const file = fresh(`docker-${style}.tar`);
    const built = await writeDockerSave(file, base, style);
    const { info, src } = await read(file);
    t.is(info.format, 'docker-save');
    t.is(info.id, built.configDigest);
    t.deepEqual(info.repoTags, ['example/app:1.0']);
    t.deepEqual(info.layers.map((l) => l.diffId), built.layers.map((l) => l.diffId));
    // The bytes handed out for unpacking are the layer tars themselves.
    const got = new Map<string, Buffer>();
    await src.readEach(info.layers.map((l) => l.entry), async (name, s) => {
      const chunks: Buffer[] = [];
      for await (const c of s) chunks.push(c as Buffer);
      got.set(name, Buffer.concat(chunks));
    });
    for (const [i, l] of info.layers.entries()) t.is(sha(got.get(l.entry)!), built.layers[i]!.diffId);
  });
}

test('docker save, older layout: a layer saved twice is a symlink to its first copy', async (t) => {
  const layers = sampleLayers();
  const file = fresh('docker-dup.tar');
  const built = await writeDockerSave(file, { layers: [layers[0]!, layers[1]!, layers[0]!] }, 'legacy');
  const { info } = await read(file);
  t.is(info.layers.length, 3);
  t.is(info.layers[0]!.entry, info.layers[2]!.entry);
  t.is(info.layers[2]!.diffId, built.layers[0]!.diffId);
});

test('docker save piped through gzip is read as it is', async (t) => {
  const file = fresh('docker.tar');
  const built = await writeDockerSave(file, base);
  const gz = `${file}.gz`;
  fs.writeFileSync(gz, gzipSync(fs.readFileSync(file)));
  const { info } = await read(gz);
  t.is(info.id, built.configDigest);
});

test('docker save unpacked into a directory reads like the archive', async (t) => {
  const dir = fresh('docker-dir');
  const { files, image } = await dockerSaveFiles(base);
  for (const [name, data] of files) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    if (Buffer.isBuffer(data)) fs.writeFileSync(path.join(dir, name), data);
  }
  const { info } = await read(dir);
  t.is(info.id, image.configDigest);
});

for (const form of ['dir', 'tar'] as const) {
  test(`OCI layout (${form}) with gzip and plain layers`, async (t) => {
    const p = fresh(`oci-${form}`);
    const opts: ImageOptions = { ...base, gzip: [0, 2] };
    const [built] = form === 'dir' ? await writeOciDir(p, [opts]) : await writeOciTar(p, [opts]);
    const { info, verified } = await read(p);
    t.is(info.format, 'oci');
    t.is(info.id, built!.configDigest);
    t.deepEqual(info.repoTags, ['example/app:1.0']);
    t.deepEqual(info.layers.map((l) => l.diffId), built!.layers.map((l) => l.diffId));
    t.deepEqual(info.layers.map((l) => l.digest), built!.layers.map((l) => l.digest));
    t.is(verified.get(info.layers[0]!.entry)!.compression, 'gzip');
    t.is(verified.get(info.layers[1]!.entry)!.compression, 'none');
  });
}

test('OCI nested index: the host platform by default, another with --platform, a clear error for none', async (t) => {
  const p = fresh('oci-multi');
  const layers = sampleLayers();
  const [amd, arm] = await writeOciDir(p, [
    { layers: [layers[0]!], platform: { os: 'linux', architecture: 'amd64' } },
    { layers: [layers[1]!], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ], { nested: true });
  if (process.arch === 'x64') t.is((await read(p)).info.id, amd!.configDigest);
  t.is((await read(p, 'linux/arm64')).info.id, arm!.configDigest);
  t.is((await read(p, 'linux/amd64')).info.id, amd!.configDigest);
  const e = await t.throwsAsync(read(p, 'linux/s390x'), { instanceOf: ImageError });
  t.regex(e!.message, /no image for platform linux\/s390x.*linux\/amd64.*linux\/arm64\/v8/);
});

test('several images in one docker save: --image picks one by name, by name without tag, or by id', async (t) => {
  const file = fresh('docker-two.tar');
  const layers = sampleLayers();
  const [web, db] = (await writeDockerSaveOf(file, [
    { layers: [layers[0]!], tags: ['example/web:2'] },
    { layers: [layers[1]!], tags: ['example/db:latest', 'example/db:1'] },
  ])) as [string, string];
  const pick = async (image?: string, platform?: string): Promise<string> => {
    const src = await openSource(file);
    return (await readImage(src, { ...(image === undefined ? {} : { image }), ...(platform === undefined ? {} : { platform }) })).id;
  };
  t.is(await pick('example/web:2'), web);
  t.is(await pick('example/db:1'), db);
  t.is(await pick('example/db'), db, 'no tag: :latest');
  t.is(await pick(db.slice(7, 19)), db, 'the first 12 hex digits of its id');
  t.is(await pick(web), web);
  t.is(await pick('example/web:2', 'linux/amd64'), web, 'with --platform too');
  const none = await t.throwsAsync(pick('example/web'), { instanceOf: ImageError });
  t.regex(none!.message, /no image named example\/web; the image has: example\/web:2 \(linux\/amd64\), example\/db:latest/);
  const both = await t.throwsAsync(pick(), { instanceOf: ImageError });
  t.regex(both!.message, /holds 2 images: .*; choose one with --image NAME or --platform/);
  await t.throwsAsync(pick('abc'), { instanceOf: ImageError }, 'three hex digits are no id');
});

test('an OCI image listed under two names: either name picks it, and its id picks it once', async (t) => {
  const p = fresh('oci-two-names');
  const [img] = await writeOciDir(p, [{ layers: [sampleLayers()[0]!] }]);
  const index = JSON.parse(fs.readFileSync(path.join(p, 'index.json'), 'utf8')) as { manifests: { annotations: Record<string, string> }[] };
  const first = index.manifests[0]!;
  index.manifests.push({ ...first, annotations: { 'io.containerd.image.name': 'example/app:2', 'org.opencontainers.image.ref.name': '2' } });
  fs.writeFileSync(path.join(p, 'index.json'), JSON.stringify(index));
  for (const image of ['example/app:1.0', 'example/app:2', img!.configDigest]) {
    t.is((await readImage(await openSource(p), { image })).id, img!.configDigest, image);
  }
  t.deepEqual(await archiveImageIds(await openSource(p)), [img!.configDigest], 'loaded once');
});

test('image load takes every image of a docker save, and one platform of each name from an OCI index', async (t) => {
  const layers = sampleLayers();
  const file = fresh('docker-load.tar');
  const ids = await writeDockerSaveOf(file, [{ layers: [layers[0]!], tags: ['example/web:2'] }, { layers: [layers[1]!], tags: ['example/db:1'] }]);
  t.deepEqual((await archiveImageIds(await openSource(file))).sort(), [...ids].sort());

  const p = fresh('oci-load');
  const [amd, arm] = await writeOciDir(p, [
    { layers: [layers[0]!], platform: { os: 'linux', architecture: 'amd64' } },
    { layers: [layers[1]!], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ], { nested: true });
  t.deepEqual(await archiveImageIds(await openSource(p), { platform: 'linux/arm64' }), [arm!.configDigest]);
  if (process.arch === 'x64') t.deepEqual(await archiveImageIds(await openSource(p)), [amd!.configDigest]);
  const e = await t.throwsAsync(archiveImageIds(await openSource(p), { platform: 'linux/s390x' }), { instanceOf: ImageError });
  t.regex(e!.message, /no image for platform linux\/s390x/);
});

for (const form of ['dir', 'tar'] as const) {
  test(`OCI (${form}): a layer blob that does not match its digest is refused, naming the layer`, async (t) => {
    const p = fresh(`oci-bad-${form}`);
    const opts: ImageOptions = { ...base, gzip: true, corruptBlob: 1 };
    if (form === 'dir') await writeOciDir(p, [opts]);
    else await writeOciTar(p, [opts]);
    const e = await t.throwsAsync(read(p), { instanceOf: ImageError });
    t.regex(e!.message, /layer 2 of 3 .*does not match its digest/);
  });

  test(`OCI (${form}): a layer whose uncompressed tar is not the config's diff_id is refused`, async (t) => {
    const p = fresh(`oci-diffid-${form}`);
    const opts: ImageOptions = { ...base, gzip: [1], wrongDiffId: 1 };
    if (form === 'dir') await writeOciDir(p, [opts]);
    else await writeOciTar(p, [opts]);
    const e = await t.throwsAsync(read(p), { instanceOf: ImageError });
    t.regex(e!.message, /layer 2 of 3 .*does not match the config's diff_id/);
  });
}

for (const style of ['modern', 'legacy'] as const) {
  test(`docker save (${style}): a corrupted layer is refused, naming it`, async (t) => {
    const file = fresh(`docker-bad-${style}.tar`);
    await writeDockerSave(file, { ...base, corruptBlob: 2 }, style);
    const e = await t.throwsAsync(read(file), { instanceOf: ImageError });
    t.regex(e!.message, style === 'modern' ? /layer 3 of 3 .*does not match its digest/ : /layer 3 of 3 .*does not match the config's diff_id/);
  });
}

test('docker save: a config that does not match the digest in its name is refused', async (t) => {
  const file = fresh('docker-badconfig.tar');
  const { files } = await dockerSaveFiles(base);
  const tampered = files.map(([name, data]): [string, Buffer | { symlink: string }] => {
    if (!Buffer.isBuffer(data) || !name.startsWith('blobs/') || data[0] !== 0x7b) return [name, data];
    return [name, Buffer.from(data.toString().replace('"os":"linux"', '"os":"LINUX"'))];
  });
  await writeTar(file, tampered);
  const e = await t.throwsAsync(read(file), { instanceOf: ImageError });
  t.regex(e!.message, /config .* does not match the digest in its name/);
});

test('docker save: a layer path leaving the archive is refused', async (t) => {
  const file = fresh('docker-escape.tar');
  const { files } = await dockerSaveFiles(base);
  const tampered = files.map(([name, data]): [string, Buffer | { symlink: string }] => {
    if (name !== 'manifest.json' || !Buffer.isBuffer(data)) return [name, data];
    const m = JSON.parse(data.toString()) as [{ Layers: string[] }];
    m[0].Layers[0] = '../../etc/passwd';
    return [name, Buffer.from(JSON.stringify(m))];
  });
  await writeTar(file, tampered);
  const e = await t.throwsAsync(read(file), { instanceOf: ImageError });
  t.regex(e!.message, /leads outside the image/);
});

test('OCI: zstd layers are read and verified by both digests; a cut zstd blob has no diff_id; a directory that is no image is refused', async (t) => {
  const p = fresh('oci-zstd');
  const [built] = await writeOciDir(p, [{ ...base, zstd: [0, 2] }]);
  const { info, verified } = await read(p);
  t.deepEqual(info.layers.map((l) => l.diffId), built!.layers.map((l) => l.diffId));
  t.deepEqual(info.layers.map((l) => l.mediaType?.endsWith('+zstd')), [true, false, true]);
  t.deepEqual(info.layers.map((l) => verified.get(l.entry)!.compression), ['zstd', 'none', 'zstd']);
  // The stored bytes of a zstd layer, cut short: its own digest is still computed, its diff_id not.
  const blob = built!.layers[0]!.blob;
  const cut = await hashStream(Readable.from([blob.subarray(0, blob.length - 10)]));
  t.is(cut.compression, 'zstd');
  t.regex((cut.uncompressed as { error: string }).error, /not valid zstd data/);
  t.deepEqual(await hashStream(Readable.from([blob])), { size: blob.length, digest: built!.layers[0]!.digest, compression: 'zstd', uncompressed: { digest: built!.layers[0]!.diffId } });

  const empty = fresh('not-an-image');
  fs.mkdirSync(empty);
  const e2 = await t.throwsAsync(read(empty), { instanceOf: ImageError });
  t.regex(e2!.message, /not an image/);
});

test('a symlink in an image directory may not lead outside it', async (t) => {
  const p = fresh('oci-link');
  await writeOciDir(p, [base]);
  fs.rmSync(path.join(p, 'index.json'));
  fs.symlinkSync('/etc/hostname', path.join(p, 'index.json'));
  const e = await t.throwsAsync(read(p), { instanceOf: ImageError });
  t.regex(e!.message, /leads outside the image directory/);
});
