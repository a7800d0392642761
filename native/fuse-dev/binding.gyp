{
  "targets": [
    {
      "target_name": "fuse_dev",
      "sources": ["fuse_dev.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
