// What a server is given for one mount: the checked options with real paths. Its own module, with
// no imports but types, so that the CLI, the API and the daemon's clients can name it without
// loading (or, in declarations, depending on) the server and its FUSE engines.
import type { WhiteoutFormat } from './whiteout-writer.js';

/** Who speaks FUSE: 'kernel' (layerfs reads /dev/fuse itself, D28) or 'libfuse' (fuse-native). */
export type Engine = 'kernel' | 'libfuse';

export interface ServeConfig {
  readonly lowers: readonly string[];
  readonly upper?: string | undefined;
  readonly work?: string | undefined;
  readonly whiteout?: WhiteoutFormat;
  /** Seconds a change underneath in a lower may stay unseen; undefined: until remount. */
  readonly lowerTtl?: number | undefined;
  readonly mountpoint: string;
  readonly readOnly: boolean;
  readonly allowOther: boolean;
  readonly fuseOptions: readonly string[];
  /** Who speaks FUSE (D28): layerfs itself ('kernel', the default) or libfuse through fuse-native. */
  readonly engine?: Engine | undefined;
  /** How long the kernel engine reads on after a burst of requests (D32); undefined: its default. */
  readonly spinMicros?: number | undefined;
  /** KiB the kernel reads ahead in the mount's files (D38); undefined: the default. */
  readonly readaheadKiB?: number | undefined;
  /** false: no FUSE passthrough for files of the upper (D51); undefined: where the kernel has it. */
  readonly passthrough?: boolean | undefined;
  /** false (noacl): the kernel checks access against the mode bits only (D71); undefined: ACLs too. */
  readonly acl?: boolean | undefined;
}
