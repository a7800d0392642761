// Whether a caller is being killed: a fatal signal is pending for it. The kernel tells a FUSE
// server only that a request was interrupted (INTERRUPT), not by what. The kernel's overlayfs
// stops a copy-up on a fatal signal and lets others interrupt nothing (ovl_copy_up_file), so
// layerfs must tell the two apart: a signal whose default action kills the process is turned into
// a pending SIGKILL for each of its threads at delivery (complete_signal), so SIGKILL among the
// thread's or the process's pending signals is the sign.
import { readFileSync } from 'node:fs';

const SIGKILL_BIT = 1n << 8n; // signal 9: bit 8 of the pending masks

/** True when the thread `tid` (a FUSE request's pid) has SIGKILL pending; false if it is gone too. */
export function fatalSignalPending(tid: number): boolean {
  let status: string;
  try {
    status = readFileSync(`/proc/${tid}/status`, 'utf8');
  } catch {
    return false; // already gone: nothing waits for the answer any more
  }
  for (const field of ['SigPnd:', 'ShdPnd:']) {
    const at = status.indexOf(field);
    if (at < 0) continue;
    const hex = status.slice(at + field.length, status.indexOf('\n', at)).trim();
    if (/^[0-9a-f]+$/i.test(hex) && (BigInt(`0x${hex}`) & SIGKILL_BIT) !== 0n) return true;
  }
  return false;
}
