// Checks made before anything is mounted, so that bad input gets one line naming the problem
// and nothing is touched: every branch exists and is a directory, no directory is used twice,
// the mountpoint is a directory, not already mounted, and neither inside a branch nor holding one
// (a branch under the mountpoint would be reached through the mount itself and deadlock).
import { ConfigError } from './config.js';
import { hasCode } from './errno.js';
import * as host from './host/fs.js';

export interface CheckedPaths {
  lowers: string[];
  upper?: string;
  work?: string;
  mountpoint: string;
}

function dirPath(role: string, p: string): string {
  let real: string;
  try {
    real = host.realpathSync(p);
  } catch (e) {
    if (hasCode(e, 'ENOENT')) throw new ConfigError(`${role} ${p}: no such directory`);
    throw new ConfigError(`${role} ${p}: ${(e as Error).message}`);
  }
  const st = host.statSyncOrUndefined(real);
  if (st === undefined) throw new ConfigError(`${role} ${p}: no such directory`);
  if (!st.isDirectory()) throw new ConfigError(`${role} ${p}: not a directory`);
  return real;
}

const within = (inner: string, outer: string): boolean =>
  inner === outer || inner.startsWith(outer.endsWith('/') ? outer : `${outer}/`);

/** Mount points in this mount namespace (decoded from /proc/self/mountinfo). */
export function mountPoints(): Set<string> {
  const text = host.readFileSyncOrUndefined('/proc/self/mountinfo') ?? '';
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f[4] !== undefined) out.add(f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

export function checkPaths(o: { lowers: readonly string[]; upper?: string | undefined; work?: string | undefined; mountpoint: string }): CheckedPaths {
  const mountpoint = dirPath('mountpoint', o.mountpoint);
  if (mountPoints().has(mountpoint)) throw new ConfigError(`mountpoint ${o.mountpoint}: already mounted`);
  const named: Array<[string, string, string]> = []; // [role, given, real]
  const lowers = o.lowers.map((d) => {
    const real = dirPath('lowerdir', d);
    named.push(['lowerdir', d, real]);
    return real;
  });
  const out: CheckedPaths = { lowers, mountpoint };
  if (o.upper !== undefined) {
    out.upper = dirPath('upperdir', o.upper);
    named.push(['upperdir', o.upper, out.upper]);
  }
  if (o.work !== undefined) {
    out.work = dirPath('workdir', o.work);
    named.push(['workdir', o.work, out.work]);
  }
  for (let i = 0; i < named.length; i++) {
    const [role, given, real] = named[i]!;
    for (let j = 0; j < i; j++) {
      const [role2, given2, real2] = named[j]!;
      if (real === real2) throw new ConfigError(`${role} ${given}: the same directory as ${role2} ${given2}`);
    }
    if (within(mountpoint, real)) throw new ConfigError(`mountpoint ${o.mountpoint}: inside ${role} ${given}`);
    if (within(real, mountpoint)) throw new ConfigError(`${role} ${given}: inside the mountpoint ${o.mountpoint}`);
  }
  if (out.upper !== undefined && out.work !== undefined) {
    if (within(out.upper, out.work) || within(out.work, out.upper)) {
      throw new ConfigError(`upperdir and workdir must not be inside one another`);
    }
  }
  return out;
}
