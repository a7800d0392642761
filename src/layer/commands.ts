// `layerfs diff`, `layerfs commit` and `layerfs apply`: argument parsing and the call into
// src/layer/. Output goes through the LayerIO that src/cli.ts gives (the only place that prints,
// reads the environment or exits). Usage mistakes throw LayerUsageError (exit code 2).
import type { Readable } from 'node:stream';
import { splitLowerdir } from '../config.js';
import * as host from '../host/fs.js';
import { applyLayer, type WhiteoutMode } from './apply.js';
import { formatChanges, upperChanges } from './changes.js';
import { commitLayerToFile, type CommitOptions } from './commit.js';

export interface LayerIO {
  /** Text for stdout. */
  out(text: string): void;
  /** The standard input (for `apply -`). */
  stdin(): Readable;
  /** SOURCE_DATE_EPOCH, if set. */
  sourceDateEpoch: string | undefined;
  /** A progress sink (done, total bytes) when stderr is a terminal; undefined otherwise. */
  progress(): { update(done: number, total: number): void; end(): void } | undefined;
}

export class LayerUsageError extends Error {}

export const LAYER_USAGE = [
  'layerfs diff UPPERDIR [--lower DIR[:DIR...]]',
  'layerfs commit UPPERDIR -o LAYER.tar[.gz] [--gzip] [--reproducible]',
  'layerfs apply LAYER|- DIR [--whiteout overlay|oci | --flatten] [--allow-devices]',
];

interface Parsed {
  readonly values: Map<string, string[]>;
  readonly bare: Set<string>;
  readonly positional: string[];
}

/** Flags with a value (`--f X`, `--f=X`, `-oX`), flags without, and positional arguments. */
function parse(args: readonly string[], withValue: readonly string[], bare: readonly string[]): Parsed {
  const out: Parsed = { values: new Map(), bare: new Set(), positional: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const key = eq > 0 ? a.slice(0, eq) : a.startsWith('-o') && a.length > 2 ? '-o' : a;
    if (withValue.includes(key)) {
      const v = eq > 0 ? a.slice(eq + 1) : key !== a ? a.slice(2) : args[++i];
      if (v === undefined) throw new LayerUsageError(`${key} needs a value`);
      out.values.set(key, [...(out.values.get(key) ?? []), v]);
    } else if (bare.includes(a)) out.bare.add(a);
    else if (a.startsWith('-') && a !== '-') throw new LayerUsageError(`unknown flag: ${a}`);
    else out.positional.push(a);
  }
  return out;
}

function last(p: Parsed, ...keys: string[]): string | undefined {
  return keys.flatMap((k) => p.values.get(k) ?? []).at(-1);
}

export async function diffCommand(args: readonly string[], io: LayerIO): Promise<number> {
  const p = parse(args, ['--lower'], []);
  if (p.positional.length !== 1) throw new LayerUsageError(`diff takes one UPPERDIR (${LAYER_USAGE[0]})`);
  const lowers = (p.values.get('--lower') ?? []).flatMap(splitLowerdir).filter((l) => l !== '');
  for (const d of [p.positional[0]!, ...lowers]) requireDir(d);
  io.out(formatChanges(await upperChanges(p.positional[0]!, lowers)));
  return 0;
}

export async function commitCommand(args: readonly string[], io: LayerIO): Promise<number> {
  const p = parse(args, ['-o', '--output'], ['--gzip', '--reproducible']);
  const file = last(p, '-o', '--output');
  if (p.positional.length !== 1 || file === undefined) throw new LayerUsageError(`commit takes one UPPERDIR and -o FILE (${LAYER_USAGE[1]})`);
  requireDir(p.positional[0]!);
  const reproducible = p.bare.has('--reproducible');
  const epoch = reproducible ? parseEpoch(io.sourceDateEpoch) : undefined;
  const bar = io.progress();
  const opts: CommitOptions = {
    gzip: p.bare.has('--gzip') || /\.(gz|tgz)$/.test(file),
    reproducible,
    ...(epoch === undefined ? {} : { epoch }),
    ...(bar === undefined ? {} : { onProgress: (done: number, total: number) => bar.update(done, total) }),
  };
  try {
    const r = await commitLayerToFile(p.positional[0]!, file, opts);
    bar?.end();
    io.out(`diff_id ${r.diffId}\n${r.digest === undefined ? '' : `digest ${r.digest}\n`}`);
  } catch (e) {
    bar?.end();
    throw e;
  }
  return 0;
}

export async function applyCommand(args: readonly string[], io: LayerIO): Promise<number> {
  const p = parse(args, ['--whiteout'], ['--flatten', '--allow-devices']);
  if (p.positional.length !== 2) throw new LayerUsageError(`apply takes LAYER and DIR (${LAYER_USAGE[2]})`);
  const given = last(p, '--whiteout');
  if (given !== undefined && p.bare.has('--flatten')) throw new LayerUsageError('--whiteout and --flatten exclude each other');
  if (given !== undefined && given !== 'overlay' && given !== 'oci') throw new LayerUsageError(`--whiteout is overlay or oci, not ${given}`);
  const whiteout: WhiteoutMode = p.bare.has('--flatten') ? 'flatten' : (given ?? 'overlay');
  const [layer, dir] = p.positional as [string, string];
  if (layer !== '-' && host.statSyncOrUndefined(layer) === undefined) throw new LayerUsageError(`${layer}: no such file`);
  const input = layer === '-' ? io.stdin() : host.fileReadStream(layer);
  await applyLayer(input, dir, { whiteout, ...(p.bare.has('--allow-devices') ? { allowDevices: true } : {}) });
  return 0;
}

function requireDir(d: string): void {
  if (host.statSyncOrUndefined(d)?.isDirectory() !== true) throw new LayerUsageError(`${d}: not a directory`);
}

/** SOURCE_DATE_EPOCH as --reproducible takes it: whole seconds, or unset. */
export function parseEpoch(v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new LayerUsageError(`SOURCE_DATE_EPOCH must be whole seconds, not ${JSON.stringify(v)}`);
  return Number(v);
}
