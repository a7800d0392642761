// The part of fuse-native 2.2.6's API that layerfs uses. Errors are negative errno numbers;
// read/write reply with the byte count in the first callback argument.
declare module 'fuse-native' {
  export type Cb<T = never> = (err: number, value?: T) => void;
  export interface FuseStat {
    mode: number; uid: number; gid: number; size: number; dev: number; nlink: number; ino: number;
    rdev: number; blksize: number; blocks: number; atime: number; mtime: number; ctime: number;
  }
  export interface FuseStatfs {
    bsize: number; frsize: number; blocks: number; bfree: number; bavail: number; files: number;
    ffree: number; favail: number; fsid: number; flag: number; namemax: number;
  }
  export interface FuseOps {
    init?(cb: Cb): void;
    getattr?(path: string, cb: Cb<FuseStat>): void;
    access?(path: string, mode: number, cb: Cb): void;
    statfs?(path: string, cb: Cb<FuseStatfs>): void;
    readlink?(path: string, cb: Cb<string>): void;
    readdir?(path: string, cb: (err: number, names?: string[], stats?: FuseStat[]) => void): void;
    open?(path: string, flags: number, cb: Cb<number>): void;
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void): void;
    write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void): void;
    release?(path: string, fd: number, cb: Cb): void;
    getxattr?(path: string, name: string, position: number, cb: Cb<Buffer>): void;
    listxattr?(path: string, cb: Cb<string[]>): void;
    setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: Cb): void;
    removexattr?(path: string, name: string, cb: Cb): void;
    create?(path: string, mode: number, cb: Cb<number>, flags?: number): void;
    truncate?(path: string, size: number, cb: Cb): void;
    ftruncate?(path: string, fd: number, size: number, cb: Cb): void;
    /** Patched: exact times (bigint ns) or 'now' / 'omit' after cb. */
    utimens?(path: string, atime: number | null, mtime: number | null, cb: Cb, atimeNs?: bigint | 'now' | 'omit', mtimeNs?: bigint | 'now' | 'omit'): void;
    flush?(path: string, fd: number, cb: Cb): void;
    fsync?(path: string, datasync: number, fd: number, cb: Cb): void;
    fsyncdir?(path: string, datasync: number, fd: number, cb: Cb): void;
    chown?(path: string, uid: number, gid: number, cb: Cb): void;
    chmod?(path: string, mode: number, cb: Cb): void;
    mknod?(path: string, mode: number, dev: number, cb: Cb): void;
    unlink?(path: string, cb: Cb): void;
    rename?(src: string, dest: string, cb: Cb): void;
    link?(src: string, dest: string, cb: Cb): void;
    symlink?(target: string, path: string, cb: Cb): void;
    mkdir?(path: string, mode: number, cb: Cb): void;
    rmdir?(path: string, cb: Cb): void;
  }
  export interface FuseOptions {
    timeout?: number | false | Record<string, number | false>;
    /** Patched: any libfuse 2 option, one per item. */
    extraOptions?: string[];
    /** Patched: called once the session has ended (own or external unmount). */
    onExit?: () => void;
    /** Patched: bounds of the xattrKnown table (defaults 262144 entries, 32 MiB; 0 entries: off). */
    xattrKnownMaxEntries?: number;
    xattrKnownMaxBytes?: number;
    /** Patched (ABI 3): the kernel may keep directory listings across opens; ignored when an opendir handler is given. */
    cacheDirs?: boolean;
    /** Patched (ABI 4): attribute timeout of directories, in seconds (files keep attr_timeout). */
    attrTimeoutDir?: number;
    [key: string]: unknown;
  }
  export default class Fuse {
    constructor(mnt: string, ops: FuseOps, opts?: FuseOptions);
    readonly mnt: string;
    mount(cb: (err: Error | null) => void): void;
    /** Patched: the caller of the request being handled, or null outside a handler. */
    context(): { uid: number; gid: number; pid: number; umask: number } | null;
    unmount(cb: (err: Error | null) => void): void;
    /**
     * Patched (ABI 2): the complete, unchangeable xattr names of path; the binding then answers
     * other names ENODATA and listxattr itself. null forgets path. False: not kept.
     */
    xattrKnown(path: string, names: readonly string[] | null): boolean;
    /** Patched (ABI 2): the xattrKnown table; hits = requests it answered. */
    xattrKnownStats(): { entries: number; bytes: number; hits: number; clears: number };
    /** Set by layerfs's patch; the unpatched binding lacks it. */
    static readonly PATCH_ABI: number | undefined;
    static isConfigured(cb: (err: Error | null, ok: boolean) => void): void;
  }
}
