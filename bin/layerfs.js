#!/usr/bin/env node
// Entry point installed as `layerfs` (and used by mount.fuse as `layerfs SOURCE MOUNTPOINT -o ...`).
import { main } from '../dist/src/cli.js';

main(process.argv.slice(2)).then((code) => process.exit(code));
