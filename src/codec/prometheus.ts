/**
 * The Prometheus text exposition format, version 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/): metric
 * families in, text out. One encoder for every server here (the engine's
 * metrics port, the metadata server, the Store master), so names, escaping
 * and number formatting are checked in one place. Pure: no I/O, no clock.
 */

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  readonly labels?: Labels;
  readonly value: number;
}

export interface HistogramSample {
  readonly labels?: Labels;
  /** Upper bounds, ascending, without +Inf. */
  readonly bounds: readonly number[];
  /** Observations per bucket (not cumulative): bounds.length + 1 entries, the last for +Inf. */
  readonly counts: readonly number[];
  readonly sum: number;
}

export type MetricFamily =
  | { readonly name: string; readonly help: string; readonly type: 'counter' | 'gauge'; readonly samples: readonly Sample[] }
  | { readonly name: string; readonly help: string; readonly type: 'histogram'; readonly samples: readonly HistogramSample[] };

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A sample value as the format writes it: Go's float formatting, with NaN and the infinities spelled out. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** A label value, escaped: backslash, double quote and line feed. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text, escaped: backslash and line feed. */
function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function labelText(labels: Labels | undefined, extra?: string): string {
  const parts: string[] = [];
  if (labels) {
    for (const [k, v] of Object.entries(labels)) {
      if (!LABEL_NAME.test(k) || k.startsWith('__')) throw new TypeError(`invalid Prometheus label name ${JSON.stringify(k)}`);
      parts.push(`${k}="${escapeLabelValue(v)}"`);
    }
  }
  if (extra !== undefined) parts.push(extra);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/**
 * The text for some metric families, each with its HELP and TYPE lines.
 * Throws TypeError on a name the format does not allow (a bug in the
 * caller, not input): metric and label names here are constants.
 */
export function encodeMetrics(families: readonly MetricFamily[]): string {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const f of families) {
    if (!METRIC_NAME.test(f.name)) throw new TypeError(`invalid Prometheus metric name ${JSON.stringify(f.name)}`);
    if (seen.has(f.name)) throw new TypeError(`metric family ${f.name} given twice`);
    seen.add(f.name);
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    if (f.type !== 'histogram') {
      for (const s of f.samples) out.push(`${f.name}${labelText(s.labels)} ${formatValue(s.value)}`);
      continue;
    }
    for (const h of f.samples) {
      if (h.counts.length !== h.bounds.length + 1) throw new TypeError(`histogram ${f.name}: ${h.bounds.length} bounds need ${h.bounds.length + 1} counts`);
      let cumulative = 0;
      h.bounds.forEach((b, i) => {
        cumulative += h.counts[i]!;
        out.push(`${f.name}_bucket${labelText(h.labels, `le="${formatValue(b)}"`)} ${cumulative}`);
      });
      cumulative += h.counts[h.bounds.length]!;
      out.push(`${f.name}_bucket${labelText(h.labels, 'le="+Inf"')} ${cumulative}`);
      out.push(`${f.name}_sum${labelText(h.labels)} ${formatValue(h.sum)}`, `${f.name}_count${labelText(h.labels)} ${cumulative}`);
    }
  }
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

/** Observations counted into fixed buckets, as a Prometheus histogram reports them. */
export class Histogram {
  readonly counts: number[];
  sum = 0;

  /** @param bounds upper bounds, ascending (+Inf is implied) */
  constructor(readonly bounds: readonly number[]) {
    for (let i = 1; i < bounds.length; i++) {
      if (!(bounds[i]! > bounds[i - 1]!)) throw new TypeError('histogram bounds must ascend');
    }
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
  }

  get count(): number {
    let n = 0;
    for (const c of this.counts) n += c;
    return n;
  }

  sample(labels?: Labels): HistogramSample {
    return labels ? { labels, bounds: this.bounds, counts: this.counts, sum: this.sum } : { bounds: this.bounds, counts: this.counts, sum: this.sum };
  }
}
