// src/host/runtime.ts: telling whether the process that serves a mount is still there.
import test from 'ava';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { isAlive } from '../../src/host/runtime.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const state = (pid: number): string | undefined => {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
};

test('a process that has exited is not alive, also while no parent has reaped it (a zombie)', async (t) => {
  // The shell starts a short sleep, prints its pid, and becomes a long sleep that never waits
  // for it: once the short one exits, it stays a zombie until the long one is gone.
  const parent = spawn('sh', ['-c', 'sleep 0.05 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const child = Number(await new Promise<string>((resolve) => parent.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()))));
    for (let i = 0; i < 100 && state(child) !== 'Z'; i++) await sleep(20);
    t.is(state(child), 'Z', 'the short sleep is a zombie');
    t.false(isAlive(child));
    t.true(isAlive(parent.pid!), 'the long sleep runs');
  } finally {
    parent.kill('SIGKILL');
  }
  t.false(isAlive(2 ** 22 + 12345), 'a pid above pid_max is no process');
});
