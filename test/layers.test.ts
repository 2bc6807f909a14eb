/**
 * The module layout ARCHITECTURE.md describes, enforced: every source file
 * belongs to a layer, imports only from its own layer or those below it, and
 * no files import each other in a circle (type-only imports included: a
 * circle of types is still two modules that cannot be read apart).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Top to bottom, as in ARCHITECTURE.md; a path ending in / is a folder. The longest match wins. */
const LAYERS: ReadonlyArray<readonly [string, readonly string[]]> = [
  ['entry points', ['src/index.ts', 'src/core.ts', 'src/store.ts', 'src/cli/']],
  ['facade', ['src/api/']],
  ['store', ['src/store/', 'src/master/']],
  ['core engine', ['src/engine/']],
  ['transports', ['src/transport/']],
  ['services', ['src/rpc/', 'src/metadata/', 'src/status/']],
  ['resources', ['src/memory.ts', 'src/lease.ts', 'src/file/', 'src/shm/', 'src/native/']],
  [
    'foundations',
    ['src/codec/', 'src/store/codec/', 'src/errors.ts', 'src/env.ts', 'src/config.ts', 'src/limits.ts', 'src/net.ts', 'src/auth.ts', 'src/tls.ts', 'src/secret-file.ts', 'src/pieces.ts', 'src/address-space.ts', 'src/diagnostics.ts'],
  ],
];

function layerOf(file: string): number {
  let best = -1;
  let len = -1;
  LAYERS.forEach(([, prefixes], i) => {
    for (const p of prefixes) {
      if ((file === p || (p.endsWith('/') && file.startsWith(p))) && p.length > len) {
        best = i;
        len = p.length;
      }
    }
  });
  return best;
}

function sources(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir)).flatMap((e) => {
    const rel = `${dir}/${e}`;
    if (statSync(path.join(ROOT, rel)).isDirectory()) return sources(rel);
    return rel.endsWith('.ts') ? [rel] : [];
  });
}

/** Relative imports and re-exports of a file, as repository paths of .ts files. */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'/g)) {
    out.push(path.posix.normalize(path.posix.join(path.posix.dirname(file), m[1]!.replace(/\.js$/, '.ts'))));
  }
  for (const m of text.matchAll(/import\(\s*'(\.[^']+)'\s*\)/g)) {
    out.push(path.posix.normalize(path.posix.join(path.posix.dirname(file), m[1]!.replace(/\.js$/, '.ts'))));
  }
  return out;
}

const FILES = sources('src');
const GRAPH = new Map(FILES.map((f) => [f, importsOf(f).filter((d) => FILES.includes(d))]));

describe('module layers (ARCHITECTURE.md)', () => {
  test('the scan sees the tree: files, and imports between them', () => {
    assert.ok(FILES.length > 100, `only ${FILES.length} source files found`);
    assert.ok(GRAPH.get('src/engine/engine.ts')!.includes('src/engine/planner.ts'), 'engine.ts imports planner.ts');
  });

  test('every source file belongs to a layer', () => {
    assert.deepEqual(FILES.filter((f) => layerOf(f) < 0), []);
  });

  test('no module imports from a layer above its own', () => {
    const up: string[] = [];
    for (const [f, deps] of GRAPH) {
      for (const d of deps) if (layerOf(d) < layerOf(f)) up.push(`${f} (${LAYERS[layerOf(f)]![0]}) imports ${d} (${LAYERS[layerOf(d)]![0]})`);
    }
    assert.deepEqual(up, []);
  });

  test('no circle of imports', () => {
    // Tarjan's strongly connected components: any of more than one file is a circle.
    let index = 0;
    const idx = new Map<string, number>();
    const low = new Map<string, number>();
    const stack: string[] = [];
    const onStack = new Set<string>();
    const circles: string[][] = [];
    const visit = (v: string): void => {
      idx.set(v, index);
      low.set(v, index++);
      stack.push(v);
      onStack.add(v);
      for (const w of GRAPH.get(v)!) {
        if (!idx.has(w)) {
          visit(w);
          low.set(v, Math.min(low.get(v)!, low.get(w)!));
        } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
      }
      if (low.get(v) === idx.get(v)) {
        const c: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          c.push(w);
        } while (w !== v);
        if (c.length > 1 || GRAPH.get(v)!.includes(v)) circles.push(c.sort());
      }
    };
    for (const f of FILES) if (!idx.has(f)) visit(f);
    assert.deepEqual(circles, []);
  });
});
