// Mount configuration: the option syntax of `mount -t overlay` and fuse-overlayfs
// (lowerdir=top:mid:base,upperdir=U,workdir=W; "\:" and "\," escape a colon or comma in a path,
// "\\" a backslash), so an overlay command line works with only the program name changed. Every
// option is validated before anything is mounted, and each problem is one line naming it.

/** Options that mount(8) / mount.fuse hand to any filesystem and that libfuse understands. */
const PASSTHROUGH = new Set([
  'dev', 'nodev', 'suid', 'nosuid', 'exec', 'noexec', 'atime', 'noatime', 'relatime',
  'norelatime', 'strictatime', 'nodiratime', 'diratime', 'async', 'sync', 'dirsync',
]);
/** Options a mount helper may pass that have no meaning for a FUSE daemon. */
const IGNORED = new Set(['defaults', 'auto', 'noauto', 'nofail', '_netdev', 'user', 'nouser', 'users', 'owner', 'group', 'x-systemd.automount']);

export interface Config {
  /** Lower branch directories as given, top-most first. */
  readonly lowers: readonly string[];
  readonly upper?: string;
  readonly work?: string;
  readonly mountpoint: string;
  /** Mount read-only even with an upper (the `ro` option). */
  readonly readOnly: boolean;
  readonly allowOther: boolean;
  /** Options handed on to libfuse / the kernel unchanged (nodev, noexec, ...). */
  readonly fuseOptions: readonly string[];
  readonly foreground: boolean;
  readonly debug: boolean;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Split a comma-separated option string, honouring backslash escapes of "," (kept escaped). */
export function splitOptions(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '\\' && i + 1 < s.length) {
      cur += ch + s[++i];
    } else if (ch === ',') {
      if (cur !== '') out.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  if (cur !== '') out.push(cur);
  return out;
}

/** Split a lowerdir value on unescaped ":" and unescape each path. */
export function splitLowerdir(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '\\' && i + 1 < s.length) {
      cur += s[++i];
    } else if (ch === ':') {
      out.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  out.push(cur);
  return out;
}

function unescape(s: string): string {
  return s.replace(/\\(.)/g, '$1');
}

/** Largest readahead=: 64 MiB, far past where larger requests stop paying (a READ is 1020 KiB at most). */
const MAX_READAHEAD_KIB = 65536;

/** Longest spin_us=: a millisecond of a CPU per burst is already more than any wake-up costs. */
const MAX_SPIN_MICROS = 1000;

export interface ParsedOptions {
  lowers: string[];
  upper?: string;
  work?: string;
  /** The whiteout format written into the upper: the kernel's (default) or OCI's. */
  whiteout: 'overlay' | 'oci';
  /**
   * Seconds a change made to a lower branch underneath the mount may stay unseen (lower_ttl=);
   * undefined: until remount, lowers being immutable by contract.
   */
  lowerTtl?: number;
  readOnly: boolean;
  /** allow_other, allow_other=on|off; undefined: the default (allowOtherByDefault, D69). */
  allowOther?: boolean;
  fuseOptions: string[];
  /** engine=: who speaks FUSE (D28); undefined: the default (kernel). */
  engine?: 'kernel' | 'libfuse';
  /** spin_us=: how long the kernel engine reads on after a burst of requests (D32); undefined: the default. */
  spinMicros?: number;
  /** daemon: served by the host's running `layerfs daemon` instead of a server of its own (D36). */
  daemon?: boolean;
  /** readahead=: KiB the kernel reads ahead in the mount's files (D38); undefined: the default. */
  readaheadKiB?: number;
  /** passthrough=off: every read and write of the upper goes through layerfs (D51); undefined: on. */
  passthrough?: boolean;
  /** noacl: the kernel checks access against the mode bits only (D71); undefined: ACLs enforced. */
  acl?: boolean;
}

/**
 * Whether other users may use a mount that did not say (D69): yes where the server runs as root,
 * as on the kernel's overlayfs (and fuse-overlayfs as root), whose mounts every user may use as
 * far as the mode bits and ACLs let them; a container's processes run as many users. Not for a
 * mount by another user: FUSE's own rule then keeps others out, and letting them in needs
 * `user_allow_other` in /etc/fuse.conf.
 */
export function allowOtherByDefault(): boolean {
  return process.geteuid?.() === 0;
}

/** A whole number from 0 to max, in `unit`, or a ConfigError that says so. */
function wholeNumber(key: string, v: string, unit: string, max: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > max) throw new ConfigError(`${key}= takes ${unit} from 0 to ${max}, not ${v}`);
  return n;
}

/** Parse the -o option list(s). Throws ConfigError on the first problem. */
export function parseOptions(optionStrings: readonly string[]): ParsedOptions {
  const out: ParsedOptions = { lowers: [], whiteout: 'overlay', readOnly: false, fuseOptions: [] };
  let sawLower = false;
  for (const raw of optionStrings.flatMap(splitOptions)) {
    const eq = raw.indexOf('=');
    const key = eq < 0 ? raw : raw.slice(0, eq);
    const value = eq < 0 ? undefined : raw.slice(eq + 1);
    const need = (): string => {
      if (value === undefined || value === '') throw new ConfigError(`option ${key} needs a value (${key}=...)`);
      return value;
    };
    switch (key) {
      case 'lowerdir': {
        const dirs = splitLowerdir(need());
        if (dirs.some((d) => d === '')) throw new ConfigError(`empty directory in lowerdir=${value}`);
        out.lowers = dirs;
        sawLower = true;
        break;
      }
      case 'upperdir': out.upper = unescape(need()); break;
      case 'workdir': out.work = unescape(need()); break;
      case 'whiteout': {
        const v = need();
        if (v !== 'overlay' && v !== 'oci') throw new ConfigError(`whiteout= takes overlay or oci, not ${v}`);
        out.whiteout = v;
        break;
      }
      case 'lower_ttl': {
        const v = need();
        const n = Number(v);
        if (!/^\d+(\.\d+)?$/.test(v) || !Number.isFinite(n)) throw new ConfigError(`lower_ttl= takes a number of seconds, not ${v}`);
        out.lowerTtl = n;
        break;
      }
      case 'engine': {
        const v = need();
        if (v !== 'kernel' && v !== 'libfuse') throw new ConfigError(`engine= takes kernel or libfuse, not ${v}`);
        out.engine = v;
        break;
      }
      case 'spin_us': out.spinMicros = wholeNumber(key, need(), 'microseconds', MAX_SPIN_MICROS); break;
      case 'readahead': out.readaheadKiB = wholeNumber(key, need(), 'KiB', MAX_READAHEAD_KIB); break;
      case 'passthrough': {
        const v = need();
        if (v !== 'on' && v !== 'off') throw new ConfigError(`passthrough= takes on or off, not ${v}`);
        out.passthrough = v === 'on';
        break;
      }
      case 'acl': case 'noacl':
        if (value !== undefined) throw new ConfigError(`option ${key} takes no value (${raw})`);
        out.acl = key === 'acl';
        break;
      case 'ro': out.readOnly = true; break;
      case 'rw': out.readOnly = false; break;
      case 'allow_other': {
        if (value !== undefined && value !== 'on' && value !== 'off') throw new ConfigError(`allow_other takes no value, or on or off, not ${value}`);
        out.allowOther = value !== 'off';
        break;
      }
      case 'daemon':
        if (value !== undefined) throw new ConfigError(`option daemon takes no value (${raw})`);
        out.daemon = true;
        break;
      // layerfs always checks permissions in the kernel, as overlayfs does; accepted for compatibility.
      case 'default_permissions': break;
      // Kernel overlayfs tuning that has no effect on layerfs's behaviour; accepted so that an
      // overlay command line works unchanged.
      case 'redirect_dir': case 'index': case 'metacopy': case 'xino': case 'nfs_export':
      case 'uuid':
        break;
      default:
        if (PASSTHROUGH.has(key) && value === undefined) out.fuseOptions.push(key);
        else if (!IGNORED.has(key)) throw new ConfigError(`unknown option: ${raw}`);
    }
  }
  if (!sawLower) throw new ConfigError('missing lowerdir= option (e.g. -o lowerdir=/top:/base)');
  if (out.upper !== undefined && out.work === undefined) throw new ConfigError('upperdir= needs workdir= too');
  if (out.work !== undefined && out.upper === undefined) throw new ConfigError('workdir= needs upperdir= too');
  return out;
}
