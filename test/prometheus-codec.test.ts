/**
 * The Prometheus text encoder (src/codec/prometheus.ts): exact output for
 * counters, gauges and histograms (written from the format's specification),
 * escaping, names the format refuses, histogram bucketing at the bounds, and
 * random label values that must come back unchanged through a strict parser.
 * The real parser (the Prometheus project's Python client) reads the engine's
 * output in test/observability.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodeMetrics, escapeLabelValue, formatValue, Histogram, PROMETHEUS_CONTENT_TYPE, type MetricFamily } from '../src/codec/prometheus.js';
import { mulberry32 } from './fuzz-lib.js';

describe('Prometheus text format 0.0.4', () => {
  it('counters and gauges: HELP, TYPE, one line a sample, labels in the order given', () => {
    const text = encodeMetrics([
      { name: 'x_total', help: 'Things.', type: 'counter', samples: [{ value: 3 }] },
      { name: 'y', help: 'Levels.', type: 'gauge', samples: [{ labels: { a: '1', b: 'two' }, value: 0.5 }, { labels: { a: '2', b: '' }, value: -1 }] },
      { name: 'empty', help: 'No samples yet.', type: 'counter', samples: [] },
    ]);
    assert.equal(
      text,
      '# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n' +
        '# HELP y Levels.\n# TYPE y gauge\ny{a="1",b="two"} 0.5\ny{a="2",b=""} -1\n' +
        '# HELP empty No samples yet.\n# TYPE empty counter\n',
    );
    assert.equal(encodeMetrics([]), '');
    assert.equal(PROMETHEUS_CONTENT_TYPE, 'text/plain; version=0.0.4; charset=utf-8');
  });

  it('histograms: cumulative buckets with le, +Inf, _sum and _count', () => {
    const h = new Histogram([0.1, 1]);
    for (const v of [0.05, 0.1, 0.5, 1, 7]) h.observe(v);
    assert.deepEqual(h.counts, [2, 2, 1], 'a value equal to a bound falls in that bound\'s bucket (le: less or equal)');
    assert.equal(h.count, 5);
    const text = encodeMetrics([{ name: 'lat_seconds', help: 'Latency.', type: 'histogram', samples: [h.sample({ op: 'read' })] }]);
    assert.equal(
      text,
      '# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n' +
        'lat_seconds_bucket{op="read",le="0.1"} 2\nlat_seconds_bucket{op="read",le="1"} 4\nlat_seconds_bucket{op="read",le="+Inf"} 5\n' +
        'lat_seconds_sum{op="read"} 8.65\nlat_seconds_count{op="read"} 5\n',
    );
  });

  it('escaping: label values (backslash, quote, newline) and HELP (backslash, newline); special values', () => {
    assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
    const text = encodeMetrics([{ name: 'z', help: 'line one\nback\\slash "quoted"', type: 'gauge', samples: [{ labels: { v: 'x"y' }, value: NaN }] }]);
    assert.equal(text, '# HELP z line one\\nback\\\\slash "quoted"\n# TYPE z gauge\nz{v="x\\"y"} NaN\n');
    assert.deepEqual([formatValue(Infinity), formatValue(-Infinity), formatValue(1e21), formatValue(0)], ['+Inf', '-Inf', '1e+21', '0']);
  });

  it('names the format does not allow, a family given twice, mismatched histograms: TypeError', () => {
    const bad: MetricFamily[][] = [
      [{ name: '1abc', help: '', type: 'gauge', samples: [] }],
      [{ name: 'a-b', help: '', type: 'gauge', samples: [] }],
      [{ name: 'a', help: '', type: 'gauge', samples: [{ labels: { 'bad-label': 'x' }, value: 1 }] }],
      [{ name: 'a', help: '', type: 'gauge', samples: [{ labels: { __reserved: 'x' }, value: 1 }] }],
      [
        { name: 'a', help: '', type: 'gauge', samples: [] },
        { name: 'a', help: '', type: 'counter', samples: [] },
      ],
      [{ name: 'h', help: '', type: 'histogram', samples: [{ bounds: [1, 2], counts: [1, 2], sum: 0 }] }],
    ];
    for (const families of bad) assert.throws(() => encodeMetrics(families), TypeError, JSON.stringify(families));
    assert.throws(() => new Histogram([1, 1]), TypeError);
    assert.throws(() => new Histogram([2, 1]), TypeError);
  });

  it('fuzz: random label values come back unchanged through a strict parser of the format', () => {
    const next = mulberry32(0x5eed);
    const alphabet = ['a', 'Z', '0', ' ', '"', '\\', '\n', '{', '}', ',', '=', 'é', '\u0000', '\t', 'n'];
    for (let round = 0; round < 2000; round++) {
      const len = Math.floor(next() * 12);
      let v = '';
      for (let i = 0; i < len; i++) v += alphabet[Math.floor(next() * alphabet.length)];
      const value = Math.floor(next() * 1e6) / 100;
      const text = encodeMetrics([{ name: 'f', help: 'h', type: 'gauge', samples: [{ labels: { k: v, other: 'x' }, value }] }]);
      const lines = text.split('\n');
      assert.equal(lines.length, 4, 'HELP, TYPE, one sample, and the final newline: a value never breaks a line');
      const parsed = parseSample(lines[2]!);
      assert.deepEqual(parsed, { name: 'f', labels: { k: v, other: 'x' }, value }, JSON.stringify(v));
    }
  });
});

/** One sample line, parsed as the format specifies (label values: \\, \" and \n escapes only). */
function parseSample(line: string): { name: string; labels: Record<string, string>; value: number } {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line);
  if (!m) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
  const labels: Record<string, string> = {};
  const body = m[2] ?? '';
  let i = 1;
  while (i < body.length - 1) {
    const eq = body.indexOf('=', i);
    const name = body.slice(i, eq);
    assert.match(name, /^[a-zA-Z_][a-zA-Z0-9_]*$/);
    assert.equal(body[eq + 1], '"');
    let j = eq + 2;
    let v = '';
    for (;;) {
      const c = body[j]!;
      if (c === '"') break;
      if (c === '\\') {
        const e = body[j + 1];
        if (e === 'n') v += '\n';
        else if (e === '\\' || e === '"') v += e;
        else throw new Error(`bad escape \\${e}`);
        j += 2;
        continue;
      }
      assert.notEqual(c, '\n');
      v += c;
      j++;
    }
    labels[name] = v;
    i = j + 1;
    if (body[i] === ',') i++;
  }
  return { name: m[1]!, labels, value: Number(m[3]) };
}
