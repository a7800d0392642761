// What a new entry inherits from its directory's default POSIX ACL, as the kernel's overlayfs gives
// it (posix_acl_create against the merged parent). layerfs builds every new entry in the work dir,
// where the host has nothing to inherit from, so it must apply the inheritance itself.
//
// The ACLs travel as the Linux xattr value of system.posix_acl_access / _default: a 4-byte
// version (2), then 8-byte entries {u16 tag, u16 perm, u32 id}, little-endian.
import { FsError } from './errno.js';

export const ACL_ACCESS = 'system.posix_acl_access';
export const ACL_DEFAULT = 'system.posix_acl_default';

const VERSION = 2;
const HEADER = 4;
const ENTRY = 8;
const USER_OBJ = 0x01;
const USER = 0x02;
const GROUP_OBJ = 0x04;
const GROUP = 0x08;
const MASK = 0x10;
const OTHER = 0x20;

interface AclEntry {
  tag: number;
  perm: number;
  id: number;
}

function parse(v: Buffer): AclEntry[] {
  if (v.length < HEADER || (v.length - HEADER) % ENTRY !== 0 || v.readUInt32LE(0) !== VERSION) {
    throw new FsError('EIO', 'acl');
  }
  const out: AclEntry[] = [];
  for (let at = HEADER; at < v.length; at += ENTRY) {
    out.push({ tag: v.readUInt16LE(at), perm: v.readUInt16LE(at + 2), id: v.readUInt32LE(at + 4) });
  }
  return out;
}

function serialize(entries: readonly AclEntry[]): Buffer {
  const v = Buffer.alloc(HEADER + entries.length * ENTRY);
  v.writeUInt32LE(VERSION, 0);
  entries.forEach((e, i) => {
    const at = HEADER + i * ENTRY;
    v.writeUInt16LE(e.tag, at);
    v.writeUInt16LE(e.perm, at + 2);
    v.writeUInt32LE(e.id, at + 4);
  });
  return v;
}

export interface Inherited {
  /** The permission bits and set-id/sticky bits to create with. */
  readonly mode: number;
  /** The new entry's access ACL; undefined where the mode bits say it all. */
  readonly access?: Buffer;
  /** A new directory's default ACL: its parent's. */
  readonly defaults?: Buffer;
}

/**
 * The mode and ACLs of a new entry asked for with `mode` in a directory whose default ACL is
 * `parentDefault`. Without one, the caller's umask applies (when the kernel left it to layerfs:
 * FUSE_DONT_MASK). With one, the umask does not: the default ACL's entries, cut down to what
 * `mode` allows, make the access ACL, and the mode bits follow them (the group bits show the mask).
 */
export function inherit(parentDefault: Buffer | undefined, mode: number, umask: number | undefined, isDir: boolean): Inherited {
  const acl = parentDefault === undefined ? [] : parse(parentDefault);
  if (acl.length === 0) return { mode: umask === undefined ? mode : mode & ~umask };
  let perms = mode & 0o777;
  let extended = false;
  let groupObj: AclEntry | undefined;
  let mask: AclEntry | undefined;
  for (const e of acl) {
    switch (e.tag) {
      case USER_OBJ:
        e.perm &= (perms >> 6) & 7;
        perms &= (e.perm << 6) | 0o077;
        break;
      case OTHER:
        e.perm &= perms & 7;
        perms &= e.perm | 0o770;
        break;
      case GROUP_OBJ:
        groupObj = e;
        break;
      case MASK:
        mask = e;
        extended = true;
        break;
      case USER:
      case GROUP:
        extended = true;
        break;
      default:
        throw new FsError('EIO', 'acl');
    }
  }
  // The group class: the mask where there is one, else the owning group's entry.
  const cls = mask ?? groupObj;
  if (cls === undefined) throw new FsError('EIO', 'acl');
  cls.perm &= (perms >> 3) & 7;
  perms &= (cls.perm << 3) | 0o707;
  return {
    mode: (mode & ~0o777) | perms,
    ...(extended ? { access: serialize(acl) } : {}),
    ...(isDir && parentDefault !== undefined ? { defaults: parentDefault } : {}),
  };
}
