// The command line. The only place that reads argv, prints to the user, and exits.
//   layerfs mount [-f] [-d] -o lowerdir=A:B[,upperdir=U,workdir=W][,OPT...] MOUNTPOINT
//   layerfs SOURCE MOUNTPOINT -o OPTS      (the form mount.fuse / fstab use; SOURCE is ignored)
//   layerfs umount MOUNTPOINT
//   layerfs stats [--json] MOUNTPOINT   (asks the running server: src/mount-process.ts)
//   layerfs daemon [-d]                 (serves the mounts made with -o daemon: src/daemon.ts)
// Without -f, `mount` starts the server as a detached child and returns once it serves (or
// prints why it could not). -d traces every operation and, as in libfuse, implies -f.
import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, allowOtherByDefault } from './config.js';
import { realpathSync } from './host/fs.js';
import { isAlive, isServing, logFor, readRecord, removeRecord } from './host/runtime.js';
import type { CommandIO } from './image/commands.js';
import type { LayerIO } from './layer/commands.js';
import { LayerfsError, checkMount, requestStats, startDaemonMount, startServer, stopMount } from './mount-process.js';
import type { ParsedOptions } from './config.js';
import type { CheckedPaths } from './preflight.js';
import type { ServeConfig } from './serve-config.js';
import { encodeName } from './name-bytes.js';

const HELP = `layerfs: a union filesystem in user space, on-disk compatible with overlayfs

Usage:
  layerfs mount [-f] [-d] -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR][,OPTION...] MOUNTPOINT
  layerfs umount MOUNTPOINT
  layerfs stats [--json] MOUNTPOINT   operation counts and latencies, cache hits, copy-ups of a mount
  layerfs daemon [-d]                 serve, in the foreground, every mount made with -o daemon
  layerfs image mount [--name NAME] [--image NAME] [--platform OS/ARCH] [--allow-devices] [-o OPTIONS] IMAGE MOUNTPOINT
  layerfs image load [--platform OS/ARCH] [--allow-devices] FILE   every image of FILE into the store
  layerfs image ls | rm IMAGE
  layerfs container ls | mount [-o OPTIONS] NAME [MOUNTPOINT] | rm NAME
  layerfs container commit NAME -o LAYER.tar[.gz] [--reproducible]
  layerfs diff UPPERDIR [--lower DIR[:DIR...]]      changes in an upper, as docker diff prints them
  layerfs commit UPPERDIR -o LAYER.tar[.gz] [--gzip] [--reproducible]   the upper as an OCI layer
  layerfs apply LAYER|- DIR [--whiteout overlay|oci | --flatten] [--allow-devices]   extract a layer
  layerfs SOURCE MOUNTPOINT -o OPTIONS      (mount.fuse form: mount -t fuse.layerfs layerfs MNT -o ...)

The leftmost lowerdir is the top-most, as in overlayfs. "\\:" escapes a colon in a path.
Without upperdir the mount is read-only.
image mount: IMAGE is a docker save tarball, an OCI image layout (a directory or a tar of one),
or an image already in the store (tag or id). Every digest is checked, each layer is unpacked
once into the store ($LAYERFS_HOME; default /var/lib/layerfs as root, ~/.local/share/layerfs
otherwise), and the mount gets a new writable container layer; it prints the container's name.

Options:
  -f                 stay in the foreground (Ctrl-C or SIGTERM unmounts)
  -d                 trace every operation on stderr (implies -f)
  -o OPTIONS         comma-separated mount options:
       lowerdir=A:B:C   read-only branches, top-most first (required)
       upperdir=DIR     writable branch (needs workdir)
       workdir=DIR      empty directory on the upper's filesystem
       whiteout=overlay|oci  format of deletions written to the upper: the kernel's (char
                        device 0:0, default) or OCI's (.wh.NAME; where mknod is not allowed)
       lower_ttl=SECONDS  bound how long a change made to a lower branch underneath the
                        mount may stay unseen (default: until remount; lowers are meant
                        to be immutable, and caching them is what makes layerfs fast)
       ro | rw          force read-only / default
       allow_other[=on|off]  let other users in, as far as the mode bits and ACLs let them
                        (checked by the kernel, as on overlayfs). Default: on as root, as
                        on overlayfs; off otherwise (on then needs user_allow_other in
                        /etc/fuse.conf)
       engine=kernel|libfuse  who speaks FUSE: layerfs itself (default, Linux 4.20+) or libfuse
       spin_us=N        keep reading /dev/fuse for N µs after a burst of requests before
                        sleeping (default 50; 0: never)
       readahead=KIB    how far the kernel reads ahead in files (default 1020; the kernel's
                        own default is 128). Set through sysfs, as root only
       passthrough=on|off  let the kernel read and write files of the upper itself, with
                        no request to layerfs (default on where the kernel has it: Linux
                        6.9+, layerfs as root; only files without set-ids, opened by root
                        or for reading)
       noacl            the kernel checks access against the mode bits only, not the POSIX
                        ACLs (still shown, copied up, inherited): a request fewer per path
                        walk through the root by other users (D71)
       daemon           have the running \`layerfs daemon\` serve the mount, with its other
                        mounts, instead of a server of its own (faster from its first
                        request; one process for all: a crash ends every mount it serves)
       nodev,nosuid,noexec,noatime,...   passed to the kernel
  -h, --help         this text
  -V, --version      the version
`;

class UsageError extends Error {}

interface MountArgs {
  foreground: boolean;
  debug: boolean;
  options: string[];
  mountpoint: string;
}

function parseMountArgs(args: string[]): MountArgs {
  const out: MountArgs = { foreground: false, debug: false, options: [], mountpoint: '' };
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-f') out.foreground = true;
    else if (a === '-d') out.debug = out.foreground = true;
    else if (a === '-o') {
      const v = args[++i];
      if (v === undefined) throw new UsageError('-o needs a value');
      out.options.push(v);
    } else if (a.startsWith('-o') && a.length > 2) out.options.push(a.slice(2));
    else if (a.startsWith('-') && a !== '-') throw new UsageError(`unknown flag: ${a}`);
    else positional.push(a);
  }
  if (positional.length !== 1) throw new UsageError('mount takes one MOUNTPOINT (see layerfs --help)');
  out.mountpoint = positional[0]!;
  return out;
}

function version(): string {
  const pkg = fileURLToPath(new URL('../../package.json', import.meta.url));
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

/** What a server is given for a checked mount. */
function serveConfig(opts: ParsedOptions, paths: CheckedPaths): ServeConfig {
  return {
    lowers: paths.lowers, upper: paths.upper, work: paths.work, whiteout: opts.whiteout, lowerTtl: opts.lowerTtl, mountpoint: paths.mountpoint,
    readOnly: opts.readOnly, allowOther: opts.allowOther ?? allowOtherByDefault(), fuseOptions: opts.fuseOptions, engine: opts.engine,
    spinMicros: opts.spinMicros, readaheadKiB: opts.readaheadKiB, passthrough: opts.passthrough, acl: opts.acl,
  };
}

async function mountCommand(args: string[]): Promise<number> {
  const m = parseMountArgs(args);
  const { opts, paths } = await checkMount(m.options, m.mountpoint);
  if (opts.daemon === true) {
    if (m.foreground) throw new UsageError('-o daemon hands the mount to the running daemon: -f and -d do not apply (run `layerfs daemon -d` to trace)');
    if (opts.engine === 'libfuse') throw new ConfigError('-o daemon serves with the kernel engine only (engine=libfuse needs a server of its own)');
    await startDaemonMount(serveConfig(opts, paths));
    return 0;
  }
  if (!m.foreground) {
    // The server runs on, detached, after this command returns (src/mount-process.ts).
    await startServer(args, { persist: true, stderr: { file: logFor(paths.mountpoint) } });
    return 0;
  }

  // Loaded only here: a command loads what it uses (the server and the union are ~150 ms of
  // module loading, which a background mount, umount or stats need not wait for).
  const [{ createLog }, { serve }, { helperNice, lowerHelperThreads }] = await Promise.all([import('./log.js'), import('./server.js'), import('./host/threads.js')]);
  lowerHelperThreads(helperNice());
  const log = createLog({ tracing: m.debug });
  const notify = process.env.LAYERFS_NOTIFY === 'ipc' && process.send !== undefined;
  process.title = `layerfs ${paths.mountpoint}`;
  let serving;
  try {
    serving = await serve(serveConfig(opts, paths), log);
  } catch (e) {
    throw new ConfigError(`cannot mount ${m.mountpoint}: ${(e as Error).message}`);
  }
  const stop = (): void => void serving.stop();
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGHUP', stop);
  if (notify) {
    process.send!({ ready: true });
    // Started by the API without persist: the mount lasts as long as the process that made it.
    if (process.env.LAYERFS_ATTACHED === '1') process.on('disconnect', stop);
    else process.disconnect();
  }
  await serving.ended;
  return 0;
}

async function umountCommand(args: string[]): Promise<number> {
  if (args.length !== 1 || args[0]!.startsWith('-')) throw new UsageError('umount takes one MOUNTPOINT');
  // Not realpath: the mount may be dead ("Transport endpoint is not connected").
  const mountpoint = resolvePath(args[0]!);
  const record = readRecord(mountpoint);
  let server;
  if (record !== undefined && isServing(record)) {
    // The daemon lets the mount go and lives on; any other server exits.
    server = record.daemon === true
      ? { pid: record.pid, daemon: true, gone: () => readRecord(mountpoint) === undefined || !isAlive(record.pid) }
      : { pid: record.pid, gone: () => !isAlive(record.pid) };
  }
  await stopMount(mountpoint, args[0]!, server);
  if (record !== undefined) removeRecord(mountpoint, record.pid);
  return 0;
}

async function daemonCommand(args: string[]): Promise<number> {
  if (args.some((a) => a !== '-d')) throw new UsageError('daemon takes only -d (trace every operation)');
  const [{ createLog }, { runDaemon }, { helperNice, lowerHelperThreads }] = await Promise.all([import('./log.js'), import('./daemon.js'), import('./host/threads.js')]);
  lowerHelperThreads(helperNice());
  process.title = 'layerfs daemon';
  await runDaemon(createLog({ tracing: args.includes('-d') }));
  return 0;
}

async function statsCommand(args: string[]): Promise<number> {
  const json = args.includes('--json');
  const rest = args.filter((a) => a !== '--json');
  if (rest.length !== 1 || rest[0]!.startsWith('-')) throw new UsageError('stats takes [--json] MOUNTPOINT');
  const given = rest[0]!;
  // The server knows its mountpoint by its real path; resolving it would ask the mount itself,
  // so only when the plain absolute path names no server.
  let stats;
  try {
    stats = await requestStats(resolvePath(given), given);
  } catch (e) {
    let real: string | undefined;
    try {
      real = realpathSync(given);
    } catch {
      real = undefined;
    }
    if (!(e instanceof LayerfsError) || real === undefined || real === resolvePath(given)) throw e;
    stats = await requestStats(real, given);
  }
  process.stdout.write(json ? `${JSON.stringify(stats, null, 2)}\n` : (await import('./stats.js')).formatStats(stats));
  return 0;
}

const STDIO: CommandIO = {
  // Names print as their bytes (name-bytes.ts), as ls and find print them.
  out: (line) => void process.stdout.write(encodeName(`${line}\n`)),
  err: (line) => void process.stderr.write(encodeName(`${line}\n`)),
};

/** A one-line progress bar on stderr, redrawn at most 10 times a second (only on a terminal). */
function progressBar(): { update(done: number, total: number): void; end(): void } {
  let last = 0;
  let drawn = false;
  const gib = (n: number): string => (n / 2 ** 30).toFixed(2);
  return {
    update(done, total) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      const frac = total > 0 ? Math.min(done / total, 1) : 1;
      const width = 30;
      const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
      process.stderr.write(`\r[${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${gib(done)}/${gib(total)} GiB`);
      drawn = true;
    },
    end() {
      if (drawn) process.stderr.write('\r\x1b[K');
    },
  };
}

const LAYER_IO: LayerIO = {
  out: (text) => void process.stdout.write(encodeName(text)),
  stdin: () => process.stdin,
  sourceDateEpoch: process.env.SOURCE_DATE_EPOCH,
  progress: () => (process.stderr.isTTY ? progressBar() : undefined),
};

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
      process.stdout.write(HELP);
      return cmd === undefined ? 2 : 0;
    }
    if (cmd === '-V' || cmd === '--version') {
      process.stdout.write(`layerfs ${version()}\n`);
      return 0;
    }
    if (cmd === 'mount') return await mountCommand(rest);
    if (cmd === 'umount' || cmd === 'unmount') return await umountCommand(rest);
    if (cmd === 'stats') return await statsCommand(rest);
    if (cmd === 'daemon') return await daemonCommand(rest);
    if (cmd === 'image' || cmd === 'container') {
      const image = await import('./image/commands.js');
      return await (cmd === 'image' ? image.imageCommand : image.containerCommand)(rest, STDIO, { mount: mountCommand, umount: umountCommand });
    }
    if (cmd === 'diff' || cmd === 'commit' || cmd === 'apply') {
      const layer = await import('./layer/commands.js');
      const run = { diff: layer.diffCommand, commit: layer.commitCommand, apply: layer.applyCommand }[cmd];
      try {
        return await run(rest, LAYER_IO);
      } catch (e) {
        throw e instanceof layer.LayerUsageError ? new UsageError(e.message) : e;
      }
    }
    // mount.fuse form: `layerfs SOURCE MOUNTPOINT -o OPTIONS`; SOURCE names nothing for layerfs.
    if (!cmd.startsWith('-') && rest.length >= 1) return await mountCommand(rest);
    throw new UsageError(`unknown command: ${cmd} (see layerfs --help)`);
  } catch (e) {
    const msg = e instanceof ConfigError || e instanceof UsageError ? e.message : (e as Error).message ?? String(e);
    if (process.env.LAYERFS_NOTIFY === 'ipc' && process.send) {
      process.send({ error: msg });
    } else {
      process.stderr.write(encodeName(`layerfs: ${msg}\n`));
    }
    return e instanceof UsageError ? 2 : 1;
  }
}

if (process.argv[1] !== undefined && resolvePath(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // Exit explicitly: fuse-native keeps a handle open after the mount has ended.
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
