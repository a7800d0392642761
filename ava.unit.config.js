// Unit tests: the union core without FUSE, in parallel worker threads.
export default {
  files: ['dist/test/unit/**/*.test.js'],
  timeout: '60s',
};
