/**
 * bench:compare's chart (benchmarks/compare-chart.ts): the table in
 * BENCHMARKS.md read back, the SVG drawn from it well-formed (a strict parser
 * here, and Python's expat-based xml.dom.minidom when python3 is there), one
 * bar per block, op and contender with its height and whisker on the panel's
 * scale, text escaped, malformed tables refused with the line named, missing
 * values drawn as "n/a" without a NaN anywhere.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BAR_CONTENDERS,
  BEGIN,
  END,
  escapeXml,
  formatGBps,
  parseCompareTable,
  renderCompareChart,
  type CompareChartInput,
} from '../benchmarks/compare-chart.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url)); // dist/test -> repo root

/** The section compare.ts wrote for its run of 2026-12-04 (shortened after the table). */
const RECORDED = `# Benchmarks

Some prose before.

${BEGIN}
Run 2026-12-04 02:42 UTC: \`npm run bench:compare -- --rounds 5 --duration 4\` (node v20.20.2, 2 cores, 1-min load before each block size: 0.77, 0.65, 0.71, 0.65).

| block | op | iperf3 | memcpy (Buffer.copy) | Mooncake default | Mooncake pooled | ours | ours / Mooncake best | ours / Mooncake default | ours / iperf3 |
|---|---|---|---|---|---|---|---|---|---|
| 4 KiB | write | 1.54 (1.32-1.56) | 11.19 (10.34-11.69) | 0.058 (0.057-0.058) | 0.15 (0.14-0.16) | 2.09 (1.87-2.38) | 14.15x | 36.12x | 1.36x |
| 4 KiB | read | 1.54 (1.32-1.56) | 11.19 (10.34-11.69) | 0.058 (0.058-0.058) | 0.15 (0.15-0.16) | 2.17 (1.89-2.43) | 14.01x | 37.56x | 1.41x |
| 64 KiB | write | 3.51 (2.51-3.72) | 19.42 (17.63-19.82) | 0.92 (0.91-0.92) | 1.90 (1.82-1.99) | 5.11 (4.34-5.30) | 2.69x | 5.54x | 1.46x |
| 64 KiB | read | 3.51 (2.51-3.72) | 19.42 (17.63-19.82) | 0.92 (0.89-0.92) | 1.82 (1.70-2.01) | 4.98 (4.71-5.45) | 2.73x | 5.39x | 1.42x |
| 1 MiB | write | 6.33 (5.88-6.53) | 17.54 (16.55-18.13) | 2.44 (2.30-2.52) | 2.66 (2.56-2.72) | 7.70 (4.38-8.53) | 2.89x | 3.16x | 1.22x |
| 1 MiB | read | 6.33 (5.88-6.53) | 17.54 (16.55-18.13) | 1.98 (1.91-2.09) | 2.18 (2.05-2.29) | 5.69 (4.81-6.01) | 2.61x | 2.87x | 0.90x |
| 8 MiB | write | 5.73 (5.38-6.47) | 17.62 (15.77-19.43) | 2.58 (2.40-2.92) | 2.52 (2.35-2.57) | 7.87 (7.00-8.13) | 3.05x | 3.05x | 1.37x |
| 8 MiB | read | 5.73 (5.38-6.47) | 17.62 (15.77-19.43) | 0.78 (0.74-2.11) | 1.94 (1.74-2.01) | 5.68 (5.01-5.90) | 2.93x | 7.25x | 0.99x |

GB/s (decimal), median of 5 rounds of 4 s per contender with (min-max).

- 4 KiB write, ours vs Mooncake's best mode >= 3x: 14.15x PASS
${END}

Prose after.
`;

// ------------------------------------------------- a strict little XML reader

interface El {
  name: string;
  attrs: Record<string, string>;
  children: Array<El | string>;
}

const ENTITY: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Entities decoded; a bare "&" or an unknown entity throws. */
function decode(s: string, where: string): string {
  return s.replace(/&([^;&\s]*);?/g, (all, name: string) => {
    if (!all.endsWith(';')) throw new Error(`bare "&" in ${where}`);
    if (name in ENTITY) return ENTITY[name]!;
    const m = /^#(?:x([0-9a-fA-F]+)|([0-9]+))$/.exec(name);
    if (!m) throw new Error(`unknown entity &${name}; in ${where}`);
    return String.fromCodePoint(m[1] ? parseInt(m[1], 16) : Number(m[2]));
  });
}

/**
 * Parses `xml` strictly enough for the chart: an optional XML declaration,
 * then one element; tags balanced, attributes double-quoted and unique, no
 * "<" in attributes, every "&" an entity, no comments, CDATA or DOCTYPE.
 */
function parseXml(xml: string): El {
  let i = 0;
  const decl = /^<\?xml [^?]*\?>/.exec(xml);
  if (decl) i = decl[0].length;
  const NAME = /[A-Za-z_][\w.:-]*/y;
  const name = (): string => {
    NAME.lastIndex = i;
    const m = NAME.exec(xml);
    if (!m) throw new Error(`a name expected at ${i}: ${JSON.stringify(xml.slice(i, i + 20))}`);
    i += m[0].length;
    return m[0];
  };
  const ws = (): void => {
    while (/\s/.test(xml[i] ?? '')) i++;
  };
  const element = (): El => {
    if (xml[i] !== '<' || /[!?/]/.test(xml[i + 1] ?? '')) throw new Error(`an element expected at ${i}: ${JSON.stringify(xml.slice(i, i + 20))}`);
    i++;
    const el: El = { name: name(), attrs: {}, children: [] };
    for (;;) {
      const before = i;
      ws();
      if (xml.startsWith('/>', i)) {
        i += 2;
        return el;
      }
      if (xml[i] === '>') {
        i++;
        break;
      }
      if (i === before) throw new Error(`white space expected before an attribute at ${i}`);
      const a = name();
      if (a in el.attrs) throw new Error(`attribute ${a} twice on <${el.name}>`);
      if (xml[i] !== '=' || xml[i + 1] !== '"') throw new Error(`${a}="..." expected at ${i}`);
      const end = xml.indexOf('"', i + 2);
      if (end < 0) throw new Error(`unterminated ${a}`);
      const raw = xml.slice(i + 2, end);
      if (raw.includes('<')) throw new Error(`"<" in attribute ${a}`);
      el.attrs[a] = decode(raw, `attribute ${a}`);
      i = end + 1;
    }
    for (;;) {
      const lt = xml.indexOf('<', i);
      if (lt < 0) throw new Error(`<${el.name}> is not closed`);
      if (lt > i) el.children.push(decode(xml.slice(i, lt), `the text of <${el.name}>`));
      i = lt;
      if (xml.startsWith('</', i)) {
        i += 2;
        const closing = name();
        if (closing !== el.name) throw new Error(`</${closing}> closes <${el.name}>`);
        ws();
        if (xml[i] !== '>') throw new Error(`">" expected at ${i}`);
        i++;
        return el;
      }
      el.children.push(element());
    }
  };
  ws();
  const root = element();
  if (xml.slice(i).trim() !== '') throw new Error(`content after the root element: ${JSON.stringify(xml.slice(i, i + 20))}`);
  return root;
}

function all(el: El, pred: (e: El) => boolean, out: El[] = []): El[] {
  if (pred(el)) out.push(el);
  for (const c of el.children) if (typeof c !== 'string') all(c, pred, out);
  return out;
}
const textOf = (el: El): string => el.children.map((c) => (typeof c === 'string' ? c : textOf(c))).join('');
const byId = (root: El, id: string): El => {
  const found = all(root, (e) => e.attrs.id === id);
  assert.equal(found.length, 1, `one element with id ${id}`);
  return found[0]!;
};
const num = (el: El, a: string): number => {
  const v = Number(el.attrs[a]);
  assert.ok(Number.isFinite(v), `<${el.name} id=${el.attrs.id}> ${a}="${el.attrs[a]}"`);
  return v;
};

/** python3 with its expat-based parser, or why not. */
function pythonXml(): string | null {
  const r = spawnSync('python3', ['-c', 'import xml.dom.minidom'], { encoding: 'utf8' });
  return r.status === 0 ? null : `python3 with xml.dom.minidom is not available (${r.error?.message ?? r.stderr.trim()})`;
}

/** Python's reading of `svg`: the root, its namespace, the <title>'s text and the number of elements by name. */
function parseWithPython(svg: string): { root: string; ns: string; title: string; counts: Record<string, number> } {
  const script = [
    'import sys, json, collections, xml.dom.minidom as m',
    'd = m.parseString(sys.stdin.buffer.read())',
    'r = d.documentElement',
    't = [n for n in r.childNodes if n.nodeType == 1 and n.tagName == "title"][0]',
    'c = collections.Counter(e.tagName for e in d.getElementsByTagName("*"))',
    'print(json.dumps({"root": r.tagName, "ns": r.getAttribute("xmlns"), "title": "".join(x.data for x in t.childNodes), "counts": c}))',
  ].join('\n');
  const r = spawnSync('python3', ['-c', script], { input: svg, encoding: 'utf8' });
  assert.equal(r.status, 0, `python's parser refused the SVG: ${r.stderr}`);
  return JSON.parse(r.stdout) as { root: string; ns: string; title: string; counts: Record<string, number> };
}

/** The panel's GB/s per pixel, from its tick labels "0" and the top one. */
function panelScale(root: El, block: number): { baseline: number; pxPerGBps: number } {
  const panel = byId(root, `panel-${block}`);
  const ticks = all(panel, (e) => e.name === 'text' && e.attrs.class === 'tick').map((e) => ({ v: Number(textOf(e)), y: num(e, 'y') }));
  assert.ok(ticks.length >= 3, `panel ${block} has ${ticks.length} ticks`);
  const zero = ticks.find((t) => t.v === 0)!;
  const top = ticks.reduce((a, b) => (b.v > a.v ? b : a));
  const pxPerGBps = (zero.y - top.y) / top.v;
  for (const t of ticks) assert.ok(Math.abs(zero.y - t.y - t.v * pxPerGBps) < 0.02, `tick ${t.v} evenly spaced`);
  return { baseline: zero.y - 4, pxPerGBps }; // tick labels sit 4 px under their line
}

// ------------------------------------------------------------------ tests

describe('bench:compare chart', () => {
  it('reads the table compare.ts wrote: title, rows, spreads', () => {
    const input = parseCompareTable(RECORDED);
    assert.equal(input.title, 'Run 2026-12-04 02:42 UTC: npm run bench:compare -- --rounds 5 --duration 4');
    assert.equal(input.subtitle, 'node v20.20.2, 2 cores, 1-min load before each block size: 0.77, 0.65, 0.71, 0.65');
    assert.deepEqual(
      input.rows.map((r) => `${r.block} ${r.op}`),
      ['4096 write', '4096 read', '65536 write', '65536 read', '1048576 write', '1048576 read', '8388608 write', '8388608 read'],
    );
    assert.deepEqual(input.rows[0]!.values, {
      iperf3: { median: 1.54, min: 1.32, max: 1.56 },
      memcpy: { median: 11.19, min: 10.34, max: 11.69 },
      mcDefault: { median: 0.058, min: 0.057, max: 0.058 },
      mcPooled: { median: 0.15, min: 0.14, max: 0.16 },
      ours: { median: 2.09, min: 1.87, max: 2.38 },
    });
    assert.deepEqual(input.rows[7]!.values.mcDefault, { median: 0.78, min: 0.74, max: 2.11 });
  });

  it("reads BENCHMARKS.md's own table, and BENCHMARKS-compare.svg shows its run and medians", () => {
    const md = readFileSync(path.join(ROOT, 'BENCHMARKS.md'), 'utf8');
    const input = parseCompareTable(md);
    assert.match(input.title, /^Run \d{4}-\d\d-\d\d \d\d:\d\d UTC: npm run bench:compare/);
    assert.ok(input.rows.length > 0);
    for (const r of input.rows) {
      for (const s of Object.values(r.values)) if (s) assert.ok(s.min <= s.median && s.median <= s.max);
      assert.ok(r.values.ours !== undefined && r.values.mcDefault !== undefined && r.values.mcPooled !== undefined && r.values.iperf3 !== undefined);
    }
    // The committed chart is of this table: drawn by the run that wrote it (from the unrounded rounds,
    // so heights may differ by the rounding) or by --chart-only. Stale: `node dist/benchmarks/compare.js --chart-only`.
    const chart = parseXml(readFileSync(path.join(ROOT, 'BENCHMARKS-compare.svg'), 'utf8'));
    const stale = 'BENCHMARKS-compare.svg is not of the table in BENCHMARKS.md: redraw it with `node dist/benchmarks/compare.js --chart-only`';
    assert.equal(textOf(byId(chart, 'chart-title')), input.title, stale);
    for (const r of input.rows) {
      for (const c of BAR_CONTENDERS) {
        const s = r.values[c.key];
        const id = `${r.block}-${r.op}-${c.key}`;
        if (s) assert.equal(textOf(byId(chart, `value-${id}`)), formatGBps(s.median), stale);
        else byId(chart, `na-${id}`);
      }
    }
  });

  it('draws well-formed SVG 1.1: one bar per block, op and contender, on each panel\'s scale', () => {
    const input = parseCompareTable(RECORDED);
    const svg = renderCompareChart(input);
    assert.doesNotMatch(svg, /NaN|Infinity|undefined|<script|href=|@import|url\(/);
    const root = parseXml(svg);
    assert.equal(root.name, 'svg');
    assert.equal(root.attrs.xmlns, 'http://www.w3.org/2000/svg');
    assert.equal(root.attrs.version, '1.1');
    assert.equal(textOf(all(root, (e) => e.name === 'title')[0]!), input.title);

    const bars = all(root, (e) => e.name === 'rect' && (e.attrs.class ?? '').split(' ').includes('bar'));
    assert.equal(bars.length, 4 * 2 * BAR_CONTENDERS.length);
    const ids = new Set(bars.map((b) => b.attrs.id));
    assert.equal(ids.size, bars.length, 'bar ids are unique');
    for (const r of input.rows) for (const c of BAR_CONTENDERS) assert.ok(ids.has(`bar-${r.block}-${r.op}-${c.key}`));
    assert.equal(all(root, (e) => e.name === 'line' && e.attrs.class === 'whisker').length, bars.length);
    assert.equal(all(root, (e) => e.name === 'text' && e.attrs.class === 'na').length, 0);

    // Heights: the median on the panel's scale, read from its tick labels; whiskers from min to max.
    for (const r of input.rows) {
      const { baseline, pxPerGBps } = panelScale(root, r.block);
      for (const c of BAR_CONTENDERS) {
        const s = r.values[c.key]!;
        const id = `${r.block}-${r.op}-${c.key}`;
        const bar = byId(root, `bar-${id}`);
        assert.ok(Math.abs(num(bar, 'y') + num(bar, 'height') - baseline) < 0.02, `${id} stands on the axis`);
        assert.ok(Math.abs(num(bar, 'height') - s.median * pxPerGBps) < 0.02, `${id}: height ${bar.attrs.height} for ${s.median} GB/s at ${pxPerGBps} px/(GB/s)`);
        const w = byId(root, `whisker-${id}`);
        assert.ok(Math.abs(baseline - num(w, 'y1') - s.min * pxPerGBps) < 0.02, `${id} whisker from the min`);
        assert.ok(Math.abs(baseline - num(w, 'y2') - s.max * pxPerGBps) < 0.02, `${id} whisker to the max`);
        assert.equal(num(w, 'x1'), num(w, 'x2'));
        assert.ok(Math.abs(num(w, 'x1') - (num(bar, 'x') + num(bar, 'width') / 2)) < 0.02, `${id} whisker centred on its bar`);
        assert.equal(textOf(byId(root, `value-${id}`)), formatGBps(s.median));
      }
    }
    // Two numerically, by hand: 4 KiB write ours 2.09 against Mooncake default 0.058, in the same panel.
    const ours = num(byId(root, 'bar-4096-write-ours'), 'height');
    const mc = num(byId(root, 'bar-4096-write-mcDefault'), 'height');
    assert.ok(Math.abs(ours / mc - 2.09 / 0.058) < 0.2, `${ours} / ${mc}`);
    assert.ok(mc >= 3, 'the smallest bar is still a few pixels high on its own panel\'s scale');
    const p8 = num(byId(root, 'bar-8388608-read-mcPooled'), 'height') / num(byId(root, 'bar-8388608-read-ours'), 'height');
    assert.ok(Math.abs(p8 - 1.94 / 5.68) < 0.005, String(p8));
    // memcpy is written, not drawn.
    assert.match(textOf(all(byId(root, 'panel-4096'), (e) => e.attrs.class === 'memcpy')[0]!), /memcpy 11\.19 GB\/s/);
    // A legend names every contender.
    const legend = all(root, (e) => e.name === 'text' && e.attrs.class === 'legend').map(textOf);
    for (const c of BAR_CONTENDERS) assert.ok(legend.includes(c.label), c.label);
  });

  it("python's XML parser reads it too", (t) => {
    const why = pythonXml();
    if (why) {
      if (process.env.CI) assert.fail(why);
      return t.skip(why);
    }
    const input = parseCompareTable(RECORDED);
    const svg = renderCompareChart({ ...input, title: `${input.title} <&> "q" 'a'` });
    const py = parseWithPython(svg);
    assert.equal(py.root, 'svg');
    assert.equal(py.ns, 'http://www.w3.org/2000/svg');
    assert.equal(py.title, `${input.title} <&> "q" 'a'`);
    const mine = all(parseXml(svg), () => true);
    assert.equal(py.counts.rect, mine.filter((e) => e.name === 'rect').length);
    assert.equal(py.counts.text, mine.filter((e) => e.name === 'text').length);
  });

  it('escapes every text: a title with <&> comes back as written', () => {
    const title = 'Run <script>alert(1)</script> & "quotes" \'too\' > done';
    const svg = renderCompareChart({ ...parseCompareTable(RECORDED), title, subtitle: 'a]]>b & <c/>' });
    assert.ok(!svg.includes('<script'), 'no tag from the title');
    assert.ok(svg.includes('&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot; &apos;too&apos; &gt; done'));
    const root = parseXml(svg);
    assert.equal(textOf(all(root, (e) => e.name === 'title')[0]!), title);
    assert.equal(textOf(byId(root, 'chart-title')), title);
    assert.equal(textOf(byId(root, 'chart-subtitle')), 'a]]>b & <c/>');
    // Characters XML 1.0 cannot hold are dropped, not written.
    assert.equal(escapeXml('a\u0000b\u001bc\ufffe\td'), 'abc\td');
    parseXml(renderCompareChart({ title: 'x\u0001y', rows: [] }));
  });

  it('refuses a malformed table, naming the line', () => {
    const lineOf = (needle: string): number => RECORDED.split('\n').findIndex((l) => l.includes(needle)) + 1;
    const bad = (from: string, to: string): string => {
      assert.ok(RECORDED.includes(from), from);
      return RECORDED.replace(from, to);
    };
    const cases: Array<[string, RegExp]> = [
      ['# no markers at all', /no <!-- bench:compare:begin --> marker/],
      [RECORDED.replace(END, ''), /no <!-- bench:compare:end --> marker/],
      [`${END}\n${RECORDED.replace(END, '')}`, /comes before/],
      [bad('2.09 (1.87-2.38)', '2.09 (1.87 2.38)'), new RegExp(`line ${lineOf('| 4 KiB | write')}: column "ours": not "median \\(min-max\\)" nor "n/a": "2\\.09 \\(1\\.87 2\\.38\\)"`)],
      [bad('2.09 (1.87-2.38)', '2.09'), /column "ours": not "median \(min-max\)"/],
      [bad('2.09 (1.87-2.38)', 'fast'), /column "ours": not "median \(min-max\)" nor "n\/a": "fast"/],
      [bad('2.09 (1.87-2.38)', '2.09 (2.10-2.38)'), /column "ours": min <= median <= max does not hold in "2\.09 \(2\.10-2\.38\)"/],
      [bad('2.09 (1.87-2.38)', '-2.09 (-3-1)'), /column "ours": not "median \(min-max\)"/],
      [bad('| Mooncake pooled |', '| Mooncake lazy |'), new RegExp(`line ${lineOf('| block | op |')}: no "Mooncake pooled" column`)],
      [bad('| 64 KiB | write | 3.51 (2.51-3.72) |', '| 64 KiB | write |'), new RegExp(`line ${lineOf('| 64 KiB | write')}: 9 cells where the header has 10`)],
      [bad('| 8 MiB | read |', '| 8 MB | read |'), /block "8 MB" is not like "4 KiB"/],
      [bad('| 8 MiB | read |', '| 8 MiB | copy |'), /op "copy" is neither write nor read/],
      [bad('| 8 MiB | read |', '| 8 MiB | write |'), /a second row for 8 MiB write/],
      [bad('|---|---|---|---|---|---|---|---|---|---|', '|---|---|'), /separator row/],
      [bad('Run 2026-12-04', 'Ran 2026-12-04'), /no "Run \.\.\." line/],
      [RECORDED.replace(/^\| \d.*\n/gm, ''), /the table has no rows/],
      [RECORDED.replace(/^\|.*\n/gm, ''), /no table between the markers/],
      [bad('| 0.99x |', '| 0.99x'), new RegExp(`line ${lineOf('| 8 MiB | read')}: a table row must start and end with "\\|"`)],
      [bad('| ours / iperf3 |', '| ours / iperf3'), /the header row must start and end with "\|"/],
    ];
    for (const [md, re] of cases) {
      assert.throws(() => parseCompareTable(md), (e: unknown) => {
        assert.ok(e instanceof Error);
        assert.match(e.message, /^bench:compare table/);
        assert.match(e.message, re);
        return true;
      });
    }
  });

  it('a contender without values is drawn as "n/a", with no NaN anywhere', () => {
    // compare.ts writes "n/a" for a contender that never ran (no iperf3, no Mooncake wheel); "-" reads the same.
    let md = RECORDED;
    for (const [from, to] of [
      ['| 4 KiB | write | 1.54 (1.32-1.56) |', '| 4 KiB | write | n/a |'],
      ['| 4 KiB | read | 1.54 (1.32-1.56) |', '| 4 KiB | read | n/a |'],
      ['| 64 KiB | write | 3.51 (2.51-3.72) |', '| 64 KiB | write | n/a |'],
      ['| 64 KiB | read | 3.51 (2.51-3.72) |', '| 64 KiB | read | n/a |'],
      ['| 0.92 (0.89-0.92) | 1.82 (1.70-2.01) |', '| - | n/a |'],
    ] as const) {
      assert.ok(md.includes(from), from);
      md = md.replace(from, to);
    }
    const input = parseCompareTable(md);
    assert.equal(input.rows[0]!.values.iperf3, null);
    assert.equal(input.rows[3]!.values.mcDefault, null);
    assert.equal(input.rows[3]!.values.mcPooled, null);
    const check = (inp: CompareChartInput, nas: string[]): void => {
      const svg = renderCompareChart(inp);
      assert.doesNotMatch(svg, /NaN|Infinity|undefined/);
      const root = parseXml(svg);
      const na = all(root, (e) => e.attrs.class === 'na').map((e) => e.attrs.id);
      assert.deepEqual(na.sort(), nas.map((id) => `na-${id}`).sort());
      for (const id of nas) assert.equal(all(root, (e) => e.attrs.id === `bar-${id}` || e.attrs.id === `whisker-${id}`).length, 0);
      assert.equal(all(root, (e) => (e.attrs.class ?? '').startsWith('bar ')).length, inp.rows.length * BAR_CONTENDERS.length - nas.length);
    };
    check(input, ['4096-write-iperf3', '4096-read-iperf3', '65536-write-iperf3', '65536-read-iperf3', '65536-read-mcDefault', '65536-read-mcPooled']);

    // Straight from compare.ts's rows: a non-finite median is missing, a non-finite spread has no whisker,
    // a panel with nothing at all still has a scale.
    const rows = parseCompareTable(RECORDED).rows.slice(0, 2);
    rows[0]!.values.ours = { median: NaN, min: NaN, max: NaN };
    rows[1]!.values.ours = { median: 2, min: NaN, max: Infinity };
    rows.push({ block: 1 << 20, op: 'write', values: {} });
    const svg = renderCompareChart({ title: 't', rows });
    assert.doesNotMatch(svg, /NaN|Infinity|undefined/);
    const root = parseXml(svg);
    byId(root, 'na-4096-write-ours');
    byId(root, 'bar-4096-read-ours');
    assert.equal(all(root, (e) => e.attrs.id === 'whisker-4096-read-ours').length, 0);
    for (const c of BAR_CONTENDERS) byId(root, `na-1048576-write-${c.key}`);
    panelScale(root, 1 << 20);
    // Its op read has no row at 1 MiB: n/a too.
    for (const c of BAR_CONTENDERS) byId(root, `na-1048576-read-${c.key}`);
  });
});
