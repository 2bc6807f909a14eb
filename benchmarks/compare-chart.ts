/**
 * `bench:compare`'s results as an SVG chart (BENCHMARKS-compare.svg beside
 * BENCHMARKS.md), and a parser of the table compare.ts writes between its
 * markers in BENCHMARKS.md, so the chart of the last recorded run can be drawn
 * again without measuring (`compare.js --chart-only`). Pure: no I/O here.
 *
 * The chart: one panel per block size (small multiples, each with its own y
 * scale: 4 KiB runs at 0.05-2 GB/s, 8 MiB at up to 8, and one shared scale
 * would flatten the small blocks), in each a group of bars per op, a bar per
 * contender at its median, a whisker from the min to the max of the rounds,
 * and the median written above. Plain SVG 1.1: no scripts, no external
 * assets or fonts (generic `sans-serif`), every text escaped.
 */

export const BEGIN = '<!-- bench:compare:begin -->';
export const END = '<!-- bench:compare:end -->';

/** The contenders drawn as bars, in their order within a group. */
export type BarContender = 'ours' | 'mcDefault' | 'mcPooled' | 'iperf3';
export type Contender = BarContender | 'memcpy';

export const BAR_CONTENDERS: ReadonlyArray<{ key: BarContender; label: string; color: string }> = [
  // Okabe-Ito colours: told apart with the common colour-vision deficiencies.
  { key: 'ours', label: 'ours', color: '#0072B2' },
  { key: 'mcDefault', label: 'Mooncake default', color: '#E69F00' },
  { key: 'mcPooled', label: 'Mooncake pooled', color: '#009E73' },
  { key: 'iperf3', label: 'iperf3', color: '#8C8C8C' },
];

/** The table's column header of each contender. */
export const COLUMN: Readonly<Record<Contender, string>> = {
  iperf3: 'iperf3',
  memcpy: 'memcpy (Buffer.copy)',
  mcDefault: 'Mooncake default',
  mcPooled: 'Mooncake pooled',
  ours: 'ours',
};

/** GB/s over the rounds: their median and spread. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface CompareChartRow {
  /** Block size in bytes. */
  block: number;
  op: 'write' | 'read';
  /** Per contender; absent or null: not measured (the table's "n/a"). */
  values: Partial<Record<Contender, Spread | null>>;
}

export interface CompareChartInput {
  /** Names the run: "Run 2026-12-04 02:42 UTC: npm run bench:compare -- ...". */
  title: string;
  /** A second, smaller line (node version, cores, loads). */
  subtitle?: string;
  rows: CompareChartRow[];
}

// ------------------------------------------------------------------ text

/** "4 KiB", "1 MiB" (as benchmarks/lib.ts's sizeLabel, which the table uses). */
export const blockLabel = (size: number): string => (size >= 1 << 20 ? `${size / (1 << 20)} MiB` : `${size / 1024} KiB`);

/** Two decimals, three under 0.1 (as compare.ts writes its cells). */
export const formatGBps = (x: number): string => (x < 0.1 ? x.toFixed(3) : x.toFixed(2));

/** Text or attribute value for XML: the five specials escaped, characters XML 1.0 cannot hold dropped. */
export function escapeXml(s: string): string {
  return s
    .replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** The run line compare.ts writes first -> chart title (when and the command) and subtitle (the rest). */
export function titleFromRunLine(line: string): { title: string; subtitle?: string } {
  const m = /^Run (.+?): `([^`]+)`\s*(?:\((.*)\))?\s*\.?\s*$/.exec(line.trim());
  if (!m) return { title: line.trim().replace(/\.$/, '') };
  const title = `Run ${m[1]!}: ${m[2]!}`;
  return m[3] ? { title, subtitle: m[3] } : { title };
}

// ---------------------------------------------------------------- parser

const CELL = /^(\d+(?:\.\d+)?) \((\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)\)$/;
const MISSING = new Set(['n/a', '-', '—', '']);
const BLOCK = /^(\d+(?:\.\d+)?) (B|KiB|MiB|GiB)$/;
const UNIT: Readonly<Record<string, number>> = { B: 1, KiB: 1 << 10, MiB: 1 << 20, GiB: 1 << 30 };

/** "2.09 (1.87-2.38)" -> its spread; "n/a" or "-" -> null; anything else throws. */
export function parseCell(text: string): Spread | null {
  const t = text.trim();
  if (MISSING.has(t)) return null;
  const m = CELL.exec(t);
  if (!m) throw new Error(`not "median (min-max)" nor "n/a": "${t}"`);
  const [median, min, max] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (!(min <= median && median <= max)) throw new Error(`min <= median <= max does not hold in "${t}"`);
  return { median, min, max };
}

const cellsOf = (line: string): string[] | null => {
  const t = line.trim();
  if (!t.startsWith('|') || !t.endsWith('|') || t.length < 2) return null;
  return t.slice(1, -1).split('|').map((c) => c.trim());
};

/**
 * Reads the table compare.ts wrote between BEGIN and END in `markdown`
 * (BENCHMARKS.md's text) back into the chart's input: the title from the
 * "Run ..." line, a row per table row. Throws an Error naming the line on
 * anything it does not recognize.
 */
export function parseCompareTable(markdown: string): CompareChartInput {
  const a = markdown.indexOf(BEGIN);
  const b = markdown.indexOf(END);
  if (a < 0 || b < 0) throw new Error(`bench:compare table: no ${a < 0 ? BEGIN : END} marker`);
  if (b < a) throw new Error(`bench:compare table: ${END} comes before ${BEGIN}`);
  const firstLine = markdown.slice(0, a).split('\n').length; // the BEGIN marker's line number
  const lines = markdown.slice(a + BEGIN.length, b).split('\n'); // lines[0]: the rest of the marker's line
  function fail(i: number, msg: string): never {
    throw new Error(`bench:compare table, line ${firstLine + i}: ${msg}`);
  }

  const head = lines.findIndex((l) => l.trim().startsWith('|'));
  if (head < 0) throw new Error(`bench:compare table: no table between the markers (line ${firstLine})`);
  const runIdx = lines.slice(0, head).findIndex((l) => l.trim().startsWith('Run '));
  if (runIdx < 0) fail(head, 'no "Run ..." line naming the run before the table');
  const { title, subtitle } = titleFromRunLine(lines[runIdx]!);

  const header = cellsOf(lines[head]!);
  if (!header) fail(head, `the header row must start and end with "|": "${lines[head]!.trim()}"`);
  const col = (name: string, required: boolean): number => {
    const i = header.indexOf(name);
    if (i < 0 && required) fail(head, `no "${name}" column in the header (${header.join(', ')})`);
    return i;
  };
  const blockCol = col('block', true);
  const opCol = col('op', true);
  const cols = new Map<Contender, number>();
  for (const key of Object.keys(COLUMN) as Contender[]) {
    const i = col(COLUMN[key], key !== 'memcpy'); // memcpy is never drawn as a bar: optional
    if (i >= 0) cols.set(key, i);
  }

  const sep = cellsOf(lines[head + 1] ?? '');
  if (!sep || sep.length !== header.length || !sep.every((c) => /^:?-{3,}:?$/.test(c))) {
    fail(head + 1, `expected the separator row |---|... of ${header.length} columns, got "${(lines[head + 1] ?? '').trim()}"`);
  }

  const rows: CompareChartRow[] = [];
  const seen = new Set<string>();
  for (let i = head + 2; i < lines.length && lines[i]!.trim().startsWith('|'); i++) {
    const cells = cellsOf(lines[i]!);
    if (!cells) fail(i, `a table row must start and end with "|": "${lines[i]!.trim()}"`);
    if (cells.length !== header.length) fail(i, `${cells.length} cells where the header has ${header.length}`);
    const bm = BLOCK.exec(cells[blockCol]!);
    if (!bm) fail(i, `block "${cells[blockCol]}" is not like "4 KiB" or "1 MiB"`);
    const block = Number(bm[1]) * UNIT[bm[2]!]!;
    if (!Number.isInteger(block) || block <= 0) fail(i, `block "${cells[blockCol]}" is not a whole positive number of bytes`);
    const op = cells[opCol]!;
    if (op !== 'write' && op !== 'read') fail(i, `op "${op}" is neither write nor read`);
    const key = `${block} ${op}`;
    if (seen.has(key)) fail(i, `a second row for ${cells[blockCol]} ${op}`);
    seen.add(key);
    const values: Partial<Record<Contender, Spread | null>> = {};
    for (const [c, j] of cols) {
      try {
        values[c] = parseCell(cells[j]!);
      } catch (e) {
        fail(i, `column "${COLUMN[c]}": ${(e as Error).message}`);
      }
    }
    rows.push({ block, op: op as 'write' | 'read', values });
  }
  if (rows.length === 0) fail(head + 2, 'the table has no rows');
  return subtitle === undefined ? { title, rows } : { title, subtitle, rows };
}

// ---------------------------------------------------------------- chart

const W = 960;
const MARGIN = 24;
const GAP = 24;
const PANEL_H = 300;
const TOP = 108; // title, subtitle, legend above the panels

/** Coordinates with at most 2 decimals, never "-0". */
const n = (x: number): string => {
  const r = Math.round(x * 100) / 100;
  return String(r === 0 ? 0 : r);
};

/** A step of 1, 2, 2.5 or 5 x 10^k at least `raw`. */
function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw * (1 - 1e-9)) return m * p;
  return 10 * p;
}

/** Decimals that write every multiple of `step` exactly. */
function decimalsOf(step: number): number {
  for (let d = 0; d < 6; d++) if (Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) < 1e-6) return d;
  return 6;
}

const usable = (s: Spread | null | undefined): s is Spread => s != null && Number.isFinite(s.median);

/** The SVG document (a string) of `input`'s chart. */
export function renderCompareChart(input: CompareChartInput): string {
  const blocks: number[] = [];
  const ops: Array<'write' | 'read'> = [];
  const byKey = new Map<string, CompareChartRow>();
  for (const r of input.rows) {
    if (!Number.isFinite(r.block) || r.block <= 0) throw new RangeError(`block ${r.block} is not a positive size`);
    const k = `${r.block} ${r.op}`;
    if (byKey.has(k)) throw new RangeError(`two rows for ${blockLabel(r.block)} ${r.op}`);
    byKey.set(k, r);
    if (!blocks.includes(r.block)) blocks.push(r.block);
    if (!ops.includes(r.op)) ops.push(r.op);
    for (const [c, s] of Object.entries(r.values) as Array<[Contender, Spread | null | undefined]>) {
      if (usable(s) && (s.median < 0 || s.min < 0 || s.max < 0)) throw new RangeError(`${c} at ${blockLabel(r.block)} ${r.op}: negative GB/s`);
    }
  }

  const cols = Math.max(1, Math.min(2, blocks.length));
  const panelW = (W - 2 * MARGIN - (cols - 1) * GAP) / cols;
  const panelRows = Math.max(1, Math.ceil(blocks.length / cols));
  const H = TOP + panelRows * PANEL_H + (panelRows - 1) * GAP + MARGIN;
  const out: string[] = [];
  const text = (x: number, y: number, s: string, attrs = ''): void => {
    out.push(`<text x="${n(x)}" y="${n(y)}"${attrs ? ` ${attrs}` : ''}>${escapeXml(s)}</text>`);
  };

  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${W}" height="${n(H)}" viewBox="0 0 ${W} ${n(H)}" font-family="sans-serif" font-size="12" fill="#222222">`);
  out.push(`<title>${escapeXml(input.title)}</title>`);
  out.push(`<desc>${escapeXml(`bench:compare throughput in GB/s per block size and op: bars are medians of the rounds, whiskers their min-max.${input.subtitle ? ` ${input.subtitle}` : ''}`)}</desc>`);
  out.push(`<rect x="0" y="0" width="${W}" height="${n(H)}" fill="#FFFFFF"/>`); // readable on dark pages too
  text(MARGIN, 30, input.title, 'id="chart-title" font-size="16" font-weight="bold"');
  if (input.subtitle) text(MARGIN, 50, input.subtitle, 'id="chart-subtitle" font-size="11" fill="#555555"');

  // Legend.
  let lx = MARGIN;
  const ly = 74;
  for (const c of BAR_CONTENDERS) {
    out.push(`<rect x="${n(lx)}" y="${ly - 10}" width="14" height="12" fill="${c.color}"/>`);
    text(lx + 19, ly, c.label, 'class="legend"');
    lx += 19 + c.label.length * 7 + 22;
  }
  out.push(`<path d="M${n(lx + 5)} ${ly - 11}V${ly + 3}M${n(lx + 1)} ${ly - 11}H${n(lx + 9)}M${n(lx + 1)} ${ly + 3}H${n(lx + 9)}" stroke="#222222" stroke-width="1.2" fill="none"/>`);
  text(lx + 15, ly, 'min-max of the rounds; bars and numbers: medians, GB/s (decimal)', 'class="legend"');
  const anyMemcpy = input.rows.some((r) => usable(r.values.memcpy));
  text(MARGIN, ly + 20, `Each panel has its own scale.${anyMemcpy ? ' The memcpy reference (Buffer.copy) is not drawn: its median is written in each panel\'s corner.' : ''}`,
    'font-size="10" fill="#666666"');

  blocks.forEach((block, bi) => {
    const px = MARGIN + (bi % cols) * (panelW + GAP);
    const py = TOP + Math.floor(bi / cols) * (PANEL_H + GAP);
    const left = px + 50;
    const right = px + panelW - 10;
    const top = py + 44;
    const bottom = py + PANEL_H - 30;
    const plotH = bottom - top;

    // The scale: from 0 to a round number above every whisker, with room for the numbers on top.
    let maxV = 0;
    for (const op of ops) {
      const r = byKey.get(`${block} ${op}`);
      for (const c of BAR_CONTENDERS) {
        const s = r?.values[c.key];
        if (usable(s)) maxV = Math.max(maxV, s.median, Number.isFinite(s.max) ? s.max : 0);
      }
    }
    const step = maxV > 0 ? niceStep((maxV * 1.12) / 5) : 0.2;
    const yMax = maxV > 0 ? Math.ceil((maxV * 1.12) / step - 1e-9) * step : 1;
    const y = (v: number): number => bottom - (v / yMax) * plotH;
    const dec = decimalsOf(step);

    out.push(`<g id="panel-${block}" class="panel">`);
    out.push(`<rect x="${n(px)}" y="${n(py)}" width="${n(panelW)}" height="${PANEL_H}" fill="none" stroke="#DDDDDD"/>`);
    text(px + 10, py + 20, `${blockLabel(block)} blocks`, 'font-size="14" font-weight="bold"');
    // memcpy dwarfs the transfers (11-20 GB/s against 0.05-8): drawn, it would set every panel's scale and
    // squash the bars that matter, so it is only written here, as the ceiling of a copy within one process.
    const memcpy = [...new Set(ops.map((op) => byKey.get(`${block} ${op}`)?.values.memcpy).filter(usable).map((s) => formatGBps(s.median)))];
    if (memcpy.length) text(right, py + 20, `memcpy ${memcpy.join(' / ')} GB/s (not drawn)`, 'class="memcpy" text-anchor="end" font-size="10" fill="#888888"');
    text(left - 8, top - 12, 'GB/s', 'text-anchor="end" font-size="10" fill="#555555"');

    for (let k = 0; k * step <= yMax + step * 1e-9; k++) {
      const v = k * step;
      const ty = y(v);
      out.push(`<line x1="${n(left)}" y1="${n(ty)}" x2="${n(right)}" y2="${n(ty)}" stroke="${k === 0 ? '#222222' : '#E6E6E6'}" stroke-width="1"/>`);
      out.push(`<line x1="${n(left - 4)}" y1="${n(ty)}" x2="${n(left)}" y2="${n(ty)}" stroke="#222222" stroke-width="1"/>`);
      text(left - 7, ty + 4, v.toFixed(dec), 'class="tick" text-anchor="end" font-size="10"');
    }
    out.push(`<line x1="${n(left)}" y1="${n(top)}" x2="${n(left)}" y2="${n(bottom)}" stroke="#222222" stroke-width="1"/>`);

    const groupW = (right - left) / Math.max(1, ops.length);
    const slot = (groupW * 0.86) / BAR_CONTENDERS.length;
    const barW = slot * 0.8;
    ops.forEach((op, oi) => {
      const r = byKey.get(`${block} ${op}`);
      const gx = left + oi * groupW + groupW * 0.07;
      text(left + (oi + 0.5) * groupW, bottom + 18, op, 'text-anchor="middle" font-size="12"');
      BAR_CONTENDERS.forEach((c, ci) => {
        const s = r?.values[c.key];
        const x = gx + ci * slot + (slot - barW) / 2;
        const cx = x + barW / 2;
        const id = `${block}-${op}-${c.key}`;
        if (!usable(s)) {
          text(cx, bottom - 4, 'n/a', `id="na-${id}" class="na" text-anchor="middle" font-size="9" fill="#888888"`);
          return;
        }
        const spread = Number.isFinite(s.min) && Number.isFinite(s.max);
        const tip = `${c.label}, ${blockLabel(block)} ${op}: ${formatGBps(s.median)} GB/s${spread ? ` (${formatGBps(s.min)}-${formatGBps(s.max)})` : ''}`;
        const bt = y(s.median);
        out.push(`<rect id="bar-${id}" class="bar ${c.key}" x="${n(x)}" y="${n(bt)}" width="${n(barW)}" height="${n(bottom - bt)}" fill="${c.color}"><title>${escapeXml(tip)}</title></rect>`);
        let labelY = bt;
        if (spread) {
          const y1 = y(s.min);
          const y2 = y(s.max);
          const cap = Math.min(8, barW * 0.5) / 2;
          out.push(`<line id="whisker-${id}" class="whisker" x1="${n(cx)}" y1="${n(y1)}" x2="${n(cx)}" y2="${n(y2)}" stroke="#222222" stroke-width="1.2"/>`);
          out.push(`<path d="M${n(cx - cap)} ${n(y1)}H${n(cx + cap)}M${n(cx - cap)} ${n(y2)}H${n(cx + cap)}" stroke="#222222" stroke-width="1.2" fill="none"/>`);
          labelY = Math.min(labelY, y2);
        }
        text(cx, labelY - 4, formatGBps(s.median), `id="value-${id}" class="value" text-anchor="middle" font-size="9"`);
      });
    });
    out.push('</g>');
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
