// The package's public surface (`import ... from 'layerfs'`). Everything else under dist/ is
// internal and may change between versions.

// Mounting a union from a program (served by a child process, as `layerfs mount` does).
export { mount, optionString, type Mount, type MountOptions } from './api.js';
export { LayerfsError, type LayerfsErrorCode } from './mount-process.js';
export type { CacheStats, MountStats, OpStats } from './stats.js';

// The union core without FUSE: the merged view of branches as plain async functions. Lowers
// (and upper) must be absolute real paths; a writable union's `work` must be an empty directory
// on the upper's filesystem that nothing else uses.
export { createUnion, type Union, type UnionConfig, type UnionOps } from './union.js';
export { vpath, type VPath } from './path.js';
export { FsError, type ErrnoCode } from './errno.js';

// Layers, as Docker and OCI images carry them; no mount needed.
export { upperChanges, formatChanges, type Change, type ChangeKind } from './layer/changes.js';
export { commitLayer, commitLayerToFile, type CommitOptions, type CommitResult } from './layer/commit.js';
export { applyLayer, type ApplyOptions, type ApplyStats, type WhiteoutMode } from './layer/apply.js';
export { LayerError, type LayerErrorKind } from './layer/errors.js';
