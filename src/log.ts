// The only place that writes diagnostics. `-d` turns on one trace line per operation; bugs
// (anything thrown that is not an FsError) are always reported with their stack.
import { format } from 'node:util';

export interface Log {
  readonly tracing: boolean;
  /** Counts and times every operation (src/stats.ts), when the server keeps stats. */
  readonly stats?: { record(op: string, micros: number, error?: string): void } | undefined;
  trace(op: string, args: string, result: string, micros: number): void;
  bug(op: string, e: unknown): void;
  info(msg: string): void;
}

export function createLog(o: { tracing: boolean; write?: (line: string) => void }): Log {
  const write = o.write ?? ((line: string) => process.stderr.write(line + '\n'));
  return {
    tracing: o.tracing,
    trace(op, args, result, micros) {
      write(`layerfs: ${op}(${args}) = ${result} ${micros.toFixed(0)}us`);
    },
    bug(op, e) {
      write(`layerfs: BUG in ${op}: ${format(e)}`);
    },
    info(msg) {
      write(`layerfs: ${msg}`);
    },
  };
}
