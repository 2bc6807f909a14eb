/**
 * What a metadata server's (or Store master's) status page shows, gathered on
 * demand: the segments whose descriptors the server holds, each engine's own
 * status document read from the metrics port its descriptor advertises
 * (`metrics_port`, on the host its rpc_meta entry names), and the summed
 * throughput over the last minutes.
 *
 * Nothing runs while nobody looks: the first request starts a sample every
 * SAMPLE_MS, which stops HISTORY_MS after the last request. Requests in
 * between share the latest sample, so a flood of page loads never multiplies
 * the requests sent to engines. Each engine gets FETCH_TIMEOUT_MS and
 * MAX_DOCUMENT_BYTES; at most FETCH_CONCURRENCY are asked at once.
 */
import http from 'node:http';
import { decodeSegmentDesc, type SegmentDesc } from '../codec/descriptor.js';
import { decodeRpcMeta, type RpcMeta } from '../metadata/values.js';
import { joinHostPort, splitHostPort } from '../net.js';
import { buffersOf, filesOf } from './segment-view.js';
import { MAX_RECENT_ERRORS, MAX_SEGMENTS, type ClusterStatus, type EngineStatus, type SegmentStatus, type StoreStatus, type ThroughputSample } from './types.js';

export const SAMPLE_MS = 1000;
export const HISTORY_MS = 5 * 60_000;
export const FETCH_TIMEOUT_MS = 1000;
export const MAX_DOCUMENT_BYTES = 1 << 20;
const FETCH_CONCURRENCY = 16;

export interface CollectorOptions {
  /** Named in the document: 'metadata-server' or 'master'. */
  server: string;
  /** The metadata store's entries (key, value); absent: no segments (a master's metrics port). */
  entries?: () => Iterable<[string, Buffer]>;
  /** A Store master's view. */
  store?: () => StoreStatus;
  /** Per engine; FETCH_TIMEOUT_MS by default. */
  fetchTimeoutMs?: number;
}

interface Found {
  name: string;
  desc: SegmentDesc | null;
  /** Why desc is null. */
  problem?: string;
}

/** An engine's totals at the previous sample, to turn counters into rates. */
interface Previous {
  at: number;
  engineId: number;
  bytesRead: number;
  bytesWritten: number;
}

export class StatusCollector {
  private readonly history: ThroughputSample[] = [];
  private readonly previous = new Map<string, Previous>();
  private latest: { at: number; doc: ClusterStatus } | null = null;
  private running: Promise<ClusterStatus> | null = null;
  private lastRequest = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: CollectorOptions) {}

  /** The latest sample, taking a new one when it is older than SAMPLE_MS. */
  async status(): Promise<ClusterStatus> {
    this.lastRequest = Date.now();
    if (!this.timer && !this.closed) {
      this.timer = setInterval(() => this.tick(), SAMPLE_MS);
      this.timer.unref();
    }
    const l = this.latest;
    if (l && Date.now() - l.at < SAMPLE_MS) return l.doc;
    return this.sample();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private tick(): void {
    if (Date.now() - this.lastRequest > HISTORY_MS) {
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
      return;
    }
    this.sample().catch(() => undefined); // sample() does not reject; a bug there must not kill the server
  }

  private sample(): Promise<ClusterStatus> {
    this.running ??= this.collect().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async collect(): Promise<ClusterStatus> {
    const found = this.segments();
    const rpc = this.rpcMeta();
    const listed = found.slice(0, MAX_SEGMENTS);
    const segments = await mapBounded(listed, FETCH_CONCURRENCY, (f) => this.segmentStatus(f, rpc.get(f.name)));
    const now = Date.now();
    let readRate = 0;
    let writeRate = 0;
    const seen = new Set<string>();
    for (const s of segments) {
      const e = s.engine;
      if (!e) continue;
      seen.add(s.name);
      const prev = this.previous.get(s.name);
      this.previous.set(s.name, { at: now, engineId: e.engineId, bytesRead: e.totals.bytesRead, bytesWritten: e.totals.bytesWritten });
      // A restarted engine (new id, or counters that went back) has no rate until its next sample.
      if (!prev || prev.engineId !== e.engineId || e.totals.bytesRead < prev.bytesRead || e.totals.bytesWritten < prev.bytesWritten) continue;
      const dt = (now - prev.at) / 1000;
      if (dt <= 0) continue;
      s.readRate = (e.totals.bytesRead - prev.bytesRead) / dt;
      s.writeRate = (e.totals.bytesWritten - prev.bytesWritten) / dt;
      readRate += s.readRate;
      writeRate += s.writeRate;
    }
    for (const k of this.previous.keys()) if (!seen.has(k)) this.previous.delete(k);
    this.history.push({ t: now, readRate, writeRate });
    while (this.history.length > 0 && this.history[0]!.t < now - HISTORY_MS) this.history.shift();
    const errors = segments
      .flatMap((s) => (s.engine?.errors ?? []).map((e) => ({ ...e, segment: s.name })))
      .sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0))
      .slice(0, MAX_RECENT_ERRORS);
    const store = this.options.store?.();
    const doc: ClusterStatus = {
      generatedAt: new Date(now).toISOString(),
      server: this.options.server,
      segments,
      segmentsTotal: found.length,
      history: this.history.slice(),
      errors,
      ...(store ? { store } : {}),
    };
    this.latest = { at: now, doc };
    return doc;
  }

  /** Segment descriptors in the store, by name: every key but rpc_meta's whose value is a descriptor. */
  private segments(): Found[] {
    const out: Found[] = [];
    for (const [key, value] of this.options.entries?.() ?? []) {
      if (key.includes('/rpc_meta/')) continue;
      const ram = key.indexOf('/ram/');
      try {
        const desc = decodeSegmentDesc(value.toString('utf8'), { maxLength: 64 << 20 });
        out.push({ name: desc.name, desc });
      } catch (e) {
        // Keys under ram/ are Mooncake's descriptors: one that does not decode is shown as such; other keys are not ours to judge.
        if (ram >= 0) out.push({ name: key.slice(ram + 5), desc: null, problem: e instanceof Error ? e.message : String(e) });
      }
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** rpc_meta entries: segment name -> where it published its RPC port (values that do not decode are left out). */
  private rpcMeta(): Map<string, RpcMeta> {
    const out = new Map<string, RpcMeta>();
    for (const [key, value] of this.options.entries?.() ?? []) {
      const at = key.indexOf('/rpc_meta/');
      if (at < 0) continue;
      try {
        out.set(key.slice(at + 10), decodeRpcMeta(value.toString('utf8'), key));
      } catch {
        // the engine that reads it reports it; the page just has no address for the segment
      }
    }
    return out;
  }

  private async segmentStatus(f: Found, rpc: RpcMeta | undefined): Promise<SegmentStatus> {
    const base = {
      name: f.name,
      ...(rpc ? { rpc: joinHostPort(rpc.ipOrHostName, rpc.rpcPort) } : {}),
    };
    const desc = f.desc;
    if (!desc) {
      return { ...base, protocol: '', buffers: [], buffersTotal: 0, bufferBytes: 0, files: [], filesTotal: 0, reach: 'bad-descriptor', detail: f.problem ?? 'not a descriptor' };
    }
    let bufferBytes = 0;
    for (const b of desc.buffers) bufferBytes += Number(b.length);
    const shown: SegmentStatus = {
      ...base,
      protocol: desc.protocol,
      buffers: buffersOf(desc),
      buffersTotal: desc.buffers.length,
      bufferBytes,
      files: filesOf(desc),
      filesTotal: desc.fileBuffers?.length ?? 0,
      reach: 'no-metrics',
    };
    if (desc.metricsPort === undefined) return shown;
    const host = rpc?.ipOrHostName ?? splitHostPort(desc.name).host;
    try {
      const doc = await fetchJson(host, desc.metricsPort, '/status.json', this.options.fetchTimeoutMs ?? FETCH_TIMEOUT_MS);
      const engine = asEngineStatus(doc);
      if (!engine) return { ...shown, reach: 'unreachable', detail: `${host}:${desc.metricsPort} did not answer with an engine status document` };
      return { ...shown, reach: 'up', engine };
    } catch (e) {
      return { ...shown, reach: 'unreachable', detail: `${host}:${desc.metricsPort}: ${e instanceof Error ? e.message : String(e)}` };
    }
  }
}

/** Enough of the shape to render without throwing; the page reads nothing else. */
function asEngineStatus(v: unknown): EngineStatus | null {
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const t = o['totals'];
  if (typeof o['segment'] !== 'string' || typeof o['engineId'] !== 'number' || typeof t !== 'object' || t === null) return null;
  const totals = t as Record<string, unknown>;
  if (typeof totals['bytesRead'] !== 'number' || typeof totals['bytesWritten'] !== 'number') return null;
  if (!Array.isArray(o['peers']) || !Array.isArray(o['errors']) || !Array.isArray(o['buffers']) || !Array.isArray(o['files'])) return null;
  return v as EngineStatus;
}

/** GET a JSON document, bounded in time and size; rejects with the reason. */
export function fetchJson(host: string, port: number, path: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path, agent: false, timeout: timeoutMs, headers: { accept: 'application/json' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`HTTP ${res.statusCode ?? '?'}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_DOCUMENT_BYTES) {
          req.destroy(new Error(`document larger than ${MAX_DOCUMENT_BYTES} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch {
          reject(new Error('not JSON'));
        }
      });
      res.on('error', reject);
    });
    // `timeout` is idle time; the whole exchange is bounded too (a peer trickling bytes).
    const deadline = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.on('close', () => clearTimeout(deadline));
  });
}

/** Map with at most `limit` calls running at once, results in input order. */
async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
