// Compiled by `npm run test:types` (tsc -p test/types): the API's types, imported by name from ESM.
import {
  LayerfsError, applyLayer, commitLayerToFile, createUnion, mount, upperChanges, vpath,
  type Change, type LayerfsErrorCode, type Mount, type MountOptions, type MountStats, type OpStats,
} from 'layerfs';

const options: MountOptions = {
  lowers: ['/img/top', '/img/base'], upper: '/c/upper', work: '/c/work', whiteout: 'oci', lowerTtl: 5,
  readOnly: false, allowOther: false, fuseOptions: ['noatime'], persist: true, trace: false,
};

export async function use(): Promise<number> {
  const m: Mount = await mount('/mnt/merged', options);
  const pid: number = m.pid;
  const where: string = m.mountpoint;
  const s: MountStats = await m.stats();
  const getattr: OpStats | undefined = s.ops['getattr'];
  const p99: number = getattr?.p99Micros ?? 0;
  const ratio: number = s.cache.resolver.hitRatio + s.cache.dirs.hitRatio;
  const copied: number = s.copyUps.bytes + s.copyUps.count + s.whiteouts.written + s.whiteouts.opaqueDirs;
  await m.unmount();
  const ended: Promise<void> = m.ended;
  await ended;
  try {
    await mount('/mnt/other', { lowers: ['/x'] });
  } catch (e) {
    if (e instanceof LayerfsError) {
      const code: LayerfsErrorCode = e.code;
      if (code === 'CONFIG' || code === 'NO_FUSE' || code === 'MOUNT_FAILED') return 1;
    }
  }
  const changes: Change[] = await upperChanges('/c/upper', ['/img/top']);
  const layer = await commitLayerToFile('/c/upper', '/tmp/layer.tar', { gzip: true });
  const diffId: string = layer.diffId;
  const union = createUnion({ lowers: ['/img/top'] });
  const names = (await union.ops.readdir(vpath('/'))).map((e) => e.name);
  void applyLayer;
  return pid + where.length + p99 + ratio + copied + changes.length + diffId.length + names.length;
}

// @ts-expect-error lowers is required
export const noLowers: MountOptions = { upper: '/u' };
// @ts-expect-error whiteout is overlay or oci
export const badWhiteout: MountOptions = { lowers: ['/l'], whiteout: 'aufs' };
// @ts-expect-error an explicit undefined is not an option value (exactOptionalPropertyTypes)
export const undefinedUpper: MountOptions = { lowers: ['/l'], upper: undefined };
export function badCode(e: LayerfsError): void {
  // @ts-expect-error codes are a closed set
  if (e.code === 'EIO') return;
}
