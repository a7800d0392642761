// bench/e2e/lib/sys.ts: the bench's --cpu-latency request. While it is held the kernel reports it
// as the limit in force; once its fd is closed the limit is what it was before.
import * as fs from 'node:fs';
import test from 'ava';
import { CPU_LATENCY_DEV, holdCpuLatency, readCpuLatency } from '../../bench/e2e/lib/sys.js';

// Root only (the device is root's, 0600), as the bench is.
const usable = process.getuid?.() === 0 && fs.existsSync(CPU_LATENCY_DEV);

(usable ? test : test.skip)('a held CPU latency request is in force until its fd is closed', (t) => {
  const before = readCpuLatency();
  t.true(before > 0, `no one else holds a 0 µs request (the kernel reports ${before})`);
  const fd = holdCpuLatency(0);
  try {
    t.is(readCpuLatency(), 0);
  } finally {
    fs.closeSync(fd);
  }
  t.is(readCpuLatency(), before);
});

(usable ? test : test.skip)('a request above the limit in force does not loosen it', (t) => {
  const tight = holdCpuLatency(5);
  try {
    const loose = holdCpuLatency(1000);
    try {
      t.is(readCpuLatency(), 5);
    } finally {
      fs.closeSync(loose);
    }
  } finally {
    fs.closeSync(tight);
  }
});
