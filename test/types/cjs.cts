// Compiled by `npm run test:types`: the same package from CommonJS (require of the ESM build).
import layerfs = require('layerfs');

export async function use(): Promise<void> {
  const m: layerfs.Mount = await layerfs.mount('/mnt/merged', { lowers: ['/img/base'] });
  const stats: layerfs.MountStats = await m.stats();
  const creates: number = stats.ops['create']?.count ?? 0;
  if (creates < 0) throw new layerfs.LayerfsError('CONFIG', 'impossible');
  await m.unmount();
}
