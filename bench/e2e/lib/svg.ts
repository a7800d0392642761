/**
 * A hand-written SVG chart of benchmark medians: one group of horizontal bars per workload, one
 * bar per variant, bar length = median time relative to a reference variant on a log scale
 * (so workloads from milliseconds to minutes share one axis). Plain SVG 1.1 with inline
 * attributes only, which GitHub renders as an image.
 */
import { fmtMs } from './stats.js';

export interface ChartRow {
  label: string;
  /** Median in ms per variant (undefined: not measured). */
  medians: ReadonlyMap<string, number | undefined>;
}

export interface ChartOptions {
  title: string;
  subtitle?: string;
  variants: readonly string[];
  colors: Readonly<Record<string, string>>;
  /** Variant the ratios are taken against; rows without it use their fastest variant. */
  reference: string;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function fmtX(r: number): string {
  if (r >= 1) return `${r.toFixed(0)}×`;
  return `${r.toPrecision(1)}×`;
}

export function ratioChart(rows: readonly ChartRow[], opts: ChartOptions): string {
  // Label column wide enough for the longest label (about 6.7 px per character at 12 px).
  const labelW = Math.max(160, Math.ceil(Math.max(0, ...rows.map((r) => r.label.length + 18)) * 6.7) + 12);
  const plotW = 470;
  const valueW = 170;
  const barH = 11;
  const barGap = 2;
  const groupGap = 12;
  const top = opts.subtitle ? 78 : 64;
  const width = labelW + plotW + valueW + 20;

  // Ratios per row against the reference (or the row's fastest variant).
  const shown = rows
    .map((row) => {
      const vals = opts.variants.map((v) => ({ v, ms: row.medians.get(v) })).filter((x): x is { v: string; ms: number } => x.ms !== undefined && x.ms > 0);
      const refMs = row.medians.get(opts.reference);
      const ref = refMs !== undefined && refMs > 0 ? refMs : Math.min(...vals.map((x) => x.ms));
      const refName = refMs !== undefined && refMs > 0 ? opts.reference : vals.find((x) => x.ms === ref)?.v ?? '';
      return { label: row.label, refName, bars: vals.map((x) => ({ ...x, ratio: x.ms / ref })) };
    })
    .filter((r) => r.bars.length > 0);
  const ratios = shown.flatMap((r) => r.bars.map((b) => b.ratio));
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(0.5, ...ratios))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(2, ...ratios))));
  const x = (r: number): number => labelW + ((Math.log10(r) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotW;

  const out: string[] = [];
  let y = top;
  const groups: string[] = [];
  for (const row of shown) {
    const h = row.bars.length * (barH + barGap) - barGap;
    const refNote = row.refName !== opts.reference ? ` (vs ${row.refName})` : '';
    groups.push(
      `<text x="${labelW - 8}" y="${(y + h / 2 + 4).toFixed(1)}" text-anchor="end" font-size="12" fill="#222">${esc(row.label + refNote)}</text>`,
    );
    for (const b of row.bars) {
      const x1 = x(Math.max(lo, b.ratio));
      const color = opts.colors[b.v] ?? '#888';
      groups.push(
        `<rect x="${labelW}" y="${y}" width="${Math.max(1, x1 - labelW).toFixed(1)}" height="${barH}" fill="${color}"><title>${esc(`${b.v}: ${fmtMs(b.ms)} (${b.ratio.toFixed(2)}×)`)}</title></rect>`,
        `<text x="${(x1 + 4).toFixed(1)}" y="${y + barH - 2}" font-size="10" fill="#333">${esc(`${fmtMs(b.ms)}  ${b.ratio.toFixed(2)}×`)}</text>`,
      );
      y += barH + barGap;
    }
    y += groupGap;
  }
  const plotBottom = y - groupGap + 6;
  const height = plotBottom + 36;

  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold" fill="#111">${esc(opts.title)}</text>`,
  );
  if (opts.subtitle) out.push(`<text x="10" y="40" font-size="11" fill="#444">${esc(opts.subtitle)}</text>`);
  // Legend.
  let lx = 10;
  const ly = top - 22;
  for (const v of opts.variants) {
    out.push(`<rect x="${lx}" y="${ly - 9}" width="10" height="10" fill="${opts.colors[v] ?? '#888'}"/>`, `<text x="${lx + 14}" y="${ly}" font-size="11" fill="#222">${esc(v)}</text>`);
    lx += 24 + v.length * 6.5;
  }
  // Grid: every power of ten, and 2× / 5× in between, the reference line bold.
  for (let p = lo; p <= hi * 1.0001; p *= 10) {
    for (const m of [1, 2, 5]) {
      const r = p * m;
      if (r > hi * 1.0001) break;
      const gx = x(r).toFixed(1);
      const major = m === 1;
      const isRef = Math.abs(r - 1) < 1e-9;
      out.push(
        `<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${plotBottom}" stroke="${isRef ? '#222' : major ? '#bbb' : '#e4e4e4'}" stroke-width="${isRef ? 1.5 : 1}"/>`,
      );
      if (major || plotW / (Math.log10(hi) - Math.log10(lo)) > 120) {
        out.push(`<text x="${gx}" y="${plotBottom + 14}" text-anchor="middle" font-size="10" fill="#444">${fmtX(r)}</text>`);
      }
    }
  }
  out.push(
    `<text x="${labelW + plotW / 2}" y="${plotBottom + 30}" text-anchor="middle" font-size="11" fill="#444">${esc(`median time relative to ${opts.reference} (log scale; lower is faster)`)}</text>`,
  );
  out.push(...groups, '</svg>');
  return `${out.join('\n')}\n`;
}
