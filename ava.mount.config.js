// Tests through real mounts (layerfs over FUSE, and the kernel's overlayfs as the oracle).
// Serial and in child processes: mounts are global state, and a Node process must never
// access a FUSE mount that it serves itself (the filesystem always runs in its own process).
export default {
  files: ['dist/test/integration/**/*.test.js', 'dist/test/differential/**/*.test.js'],
  serial: true,
  workerThreads: false,
  concurrency: 1,
  timeout: '5m',
};
