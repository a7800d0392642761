// How far the kernel reads ahead in a mount's files. FUSE gives every mount a backing device of
// its own with the kernel's default readahead, 128 KiB, and the INIT reply can only lower it;
// the one way up is the device's read_ahead_kb in sysfs, which root may write. Every READ request
// costs a round trip through the server, so a sequential read of a large file is bounded by the
// number of requests: at 1 MiB a cold read of a 1 GiB file takes a quarter of the requests
// (1,024 instead of 4,096, each carrying up to max_pages) and half the time (D38). The default is
// 1020 KiB, one READ of max_pages (255, src/server.ts): at 1024 KiB each window would be a READ
// of 255 pages and one of a single page.
import { readFileSync, writeFileSync } from 'node:fs';

/** Readahead a mount gets unless `readahead=` says otherwise, in KiB (D38). */
export const DEFAULT_READAHEAD_KIB = 1020;

/**
 * The device number ("major:minor") of the mount at `mountpoint` from /proc/self/mountinfo text:
 * the last (topmost) FUSE mount there. Read from the table, not by stat(2), which on a FUSE mount
 * would ask the server, the very process that calls this.
 */
export function fuseDeviceOf(mountinfo: string, mountpoint: string): string | undefined {
  let found: string | undefined;
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    const f = line.split(' ');
    if (f.length < 7 || decodeMountField(f[4] as string) !== mountpoint) continue;
    const dash = f.indexOf('-', 6);
    const fstype = dash < 0 ? undefined : f[dash + 1];
    if (fstype === 'fuse' || fstype?.startsWith('fuse.') === true) found = f[2];
  }
  return found;
}

/** mountinfo writes space, tab, newline and backslash in paths as \ooo octal escapes. */
function decodeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * Set the readahead of the FUSE mount at `mountpoint` (after INIT: its reply sets it too). Returns
 * why it could not, for the log; the mount works either way, with the kernel's default.
 */
export function setReadahead(mountpoint: string, kib: number): string | undefined {
  try {
    const dev = fuseDeviceOf(readFileSync('/proc/self/mountinfo', 'utf8'), mountpoint);
    if (dev === undefined) return `no FUSE mount at ${mountpoint} in /proc/self/mountinfo`;
    writeFileSync(`/sys/class/bdi/${dev}/read_ahead_kb`, `${kib}\n`);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}
