/**
 * The bundled HTTP metadata server, with the semantics of Mooncake's servers
 * (the wheel's mooncake/http_metadata_server.py and mooncake-store's
 * http_metadata_server.cpp; the strictest of them where they differ):
 *
 *   GET    /metadata?key=K   200 + the stored bytes, 404 when missing
 *   PUT    /metadata?key=K   200; an existing rpc_meta key: 200 if the body is
 *                            identical, else 400 (Python and C++ servers)
 *   DELETE /metadata?key=K   200, 404 when missing
 *   an empty or blank key    400
 *   GET    /health           200 "OK"
 *   GET    /metrics          this server's counters (Prometheus text)
 *   GET    /, /ui            the status page (src/status/), and its /status.json
 *
 * Beyond Mooncake, whose servers forget everything on restart: with a data
 * directory every change is written to disk before it is acknowledged (one
 * file per key, written to a temporary file, fsynced and renamed over the
 * old one, so a crash leaves the old or the new value, never half of one)
 * and the store is reloaded on start.
 */
import http from 'node:http';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { teError, ErrorCode } from '../errors.js';
import { encodeMetrics, PROMETHEUS_CONTENT_TYPE, type MetricFamily, type Sample } from '../codec/prometheus.js';
import { StatusCollector } from '../status/collector.js';
import { STATUS_PAGE, STATUS_PAGE_TYPE } from '../status/page.js';
import type { StoreStatus } from '../status/types.js';

export const METADATA_PATH = '/metadata';
/** Larger PUT bodies are refused (413); Mooncake's etcd limit is 32 MiB too. */
export const MAX_BODY_BYTES = 32 * 1024 * 1024;

export interface MetadataHttpServerOptions {
  /** Address to listen on. */
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Persist the store here (created if missing) and reload it on start. */
  dataDir?: string;
  /**
   * More read-only pages (GET/HEAD) by path, e.g. a Store master's /metrics;
   * `/health` and `/metrics` here replace the defaults (OK, and this server's
   * own request counters).
   */
  pages?: Readonly<Record<string, () => HttpPage | Promise<HttpPage>>>;
  /** Serve the metadata store at /metadata (default true); false: only the pages (a metrics port). */
  metadata?: boolean;
  /**
   * The status page (`/`, `/ui`, `/status.json`, src/status/): served by
   * default with the metadata store, showing its segments; `false`: not
   * served; an object: served (with or without the store) as that server,
   * with a Store master's own view.
   */
  status?: false | { server: string; store?: () => StoreStatus };
}

/** A generated read-only page. */
export interface HttpPage {
  status: number;
  body: string;
  type: string;
}

/** File name for a key: keys may hold '/', ':' or anything, and be long. */
function fileFor(key: string): string {
  return `${createHash('sha256').update(key, 'utf8').digest('hex')}.json`;
}

let tmpCounter = 0;

/** Methods counted by name; any other is counted as 'other' (label values stay bounded). */
const COUNTED_METHODS = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'POST']);

export class MetadataHttpServer {
  private readonly store = new Map<string, Buffer>();
  /** `method\0path\0status` -> requests answered; paths are /metadata, the pages, or 'other'. */
  private readonly answered = new Map<string, number>();
  private readonly server: http.Server;
  /** Disk writes run one at a time, in request order, so the last acknowledged value is the one on disk. */
  private diskQueue: Promise<void> = Promise.resolve();
  /** The status page's source; null when not served. */
  private readonly status: StatusCollector | null;
  port = 0;

  private constructor(private readonly options: MetadataHttpServerOptions) {
    this.server = http.createServer((req, res) => this.handle(req, res));
    const st = options.status ?? (options.metadata === false ? false : { server: 'metadata-server' });
    this.status = st
      ? new StatusCollector({
          server: st.server,
          ...(options.metadata === false ? {} : { entries: () => this.store.entries() }),
          ...(st.store ? { store: st.store } : {}),
        })
      : null;
    // Bound the time a client may take to send its request: a slow or stalled client cannot pin resources.
    this.server.requestTimeout = 30_000;
    this.server.headersTimeout = 10_000;
  }

  static async start(options: MetadataHttpServerOptions): Promise<MetadataHttpServer> {
    const s = new MetadataHttpServer(options);
    if (options.dataDir) await s.load(options.dataDir);
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          e.code === 'EADDRINUSE'
            ? teError(ErrorCode.PORT_IN_USE, `port ${options.port} on ${options.host} is already in use`, e)
            : teError(ErrorCode.INVALID_ARGUMENT, `cannot listen on ${options.host}:${options.port}: ${e.message}`, e),
        ),
      );
      s.server.listen({ host: options.host, port: options.port, exclusive: true }, () => resolve());
    });
    const addr = s.server.address();
    s.port = typeof addr === 'object' && addr ? addr.port : options.port;
    return s;
  }

  /** The URL clients use as their metadata server. */
  get url(): string {
    const h = this.options.host === '0.0.0.0' || this.options.host === '::' ? '127.0.0.1' : this.options.host;
    return `http://${h.includes(':') ? `[${h}]` : h}:${this.port}${METADATA_PATH}`;
  }

  get size(): number {
    return this.store.size;
  }

  async close(): Promise<void> {
    this.status?.close();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await this.diskQueue;
  }

  private async load(dir: string): Promise<void> {
    await fsp.mkdir(dir, { recursive: true });
    for (const f of await fsp.readdir(dir)) {
      const file = path.join(dir, f);
      if (f.includes('.tmp-')) {
        await fsp.rm(file, { force: true }); // an interrupted write: the previous value is still in place
        continue;
      }
      if (!/^[0-9a-f]{64}\.json$/.test(f)) continue;
      let rec: unknown;
      try {
        rec = JSON.parse(await fsp.readFile(file, 'utf8'));
      } catch (e) {
        throw teError(ErrorCode.MALFORMED, `metadata data file ${file} is not valid JSON: ${(e as Error).message}`, e);
      }
      if (typeof rec !== 'object' || rec === null || !('key' in rec) || !('value' in rec) || typeof rec.key !== 'string' || typeof rec.value !== 'string') {
        throw teError(ErrorCode.MALFORMED, `metadata data file ${file} does not hold {"key", "value"}`);
      }
      this.store.set(rec.key, Buffer.from(rec.value, 'base64'));
    }
  }

  /** Queue a disk write (value) or removal (null) of one key; resolves once it is durable. */
  private persist(key: string, value: Buffer | null): Promise<void> {
    const dir = this.options.dataDir;
    if (!dir) return Promise.resolve();
    const run = async (): Promise<void> => {
      const file = path.join(dir, fileFor(key));
      if (value === null) {
        await fsp.rm(file, { force: true });
      } else {
        const tmp = `${file}.tmp-${process.pid}-${tmpCounter++}`;
        const fh = await fsp.open(tmp, 'w', 0o600);
        try {
          await fh.writeFile(JSON.stringify({ key, value: value.toString('base64') }));
          await fh.sync();
        } finally {
          await fh.close();
        }
        await fsp.rename(tmp, file);
      }
      const d = await fsp.open(dir, 'r'); // make the rename itself durable
      try {
        await d.sync();
      } finally {
        await d.close();
      }
    };
    const p = this.diskQueue.then(run);
    this.diskQueue = p.catch(() => undefined);
    return p;
  }

  /** This server's own metric families: requests by method, path and status; keys and bytes stored. */
  metricFamilies(): MetricFamily[] {
    let bytes = 0;
    for (const v of this.store.values()) bytes += v.length;
    const requests: Sample[] = [...this.answered].sort().map(([k, n]) => {
      const [method, path, code] = k.split('\0') as [string, string, string];
      return { labels: { method, path, code }, value: n };
    });
    return [
      { name: 'metadata_server_requests_total', help: 'HTTP requests answered, by method, path and status code.', type: 'counter', samples: requests },
      { name: 'metadata_server_keys', help: 'Keys in the metadata store.', type: 'gauge', samples: [{ value: this.store.size }] },
      { name: 'metadata_server_stored_bytes', help: 'Bytes of the values in the metadata store.', type: 'gauge', samples: [{ value: bytes }] },
    ];
  }

  /** The pages served unless `pages` replaces them: /metrics, and the status page when served. */
  private defaultPage(pathname: string): (() => HttpPage | Promise<HttpPage>) | undefined {
    if (pathname === '/metrics') return () => ({ status: 200, body: encodeMetrics(this.metricFamilies()), type: PROMETHEUS_CONTENT_TYPE });
    const status = this.status;
    if (!status) return undefined;
    if (pathname === '/' || pathname === '/ui') return () => ({ status: 200, body: STATUS_PAGE, type: STATUS_PAGE_TYPE });
    if (pathname === '/status.json') return async () => ({ status: 200, body: `${JSON.stringify(await status.status())}\n`, type: 'application/json; charset=utf-8' });
    return undefined;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    let counted = 'other';
    const send = (status: number, body: string | Buffer, type = 'text/plain; charset=utf-8'): void => {
      if (res.headersSent || res.destroyed) return;
      const method = COUNTED_METHODS.has(req.method ?? '') ? req.method! : 'other';
      const k = `${method}\0${counted}\0${status}`;
      this.answered.set(k, (this.answered.get(k) ?? 0) + 1);
      res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    };
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      send(400, 'bad request URL');
      return;
    }
    const page =
      this.options.pages && Object.hasOwn(this.options.pages, url.pathname) ? this.options.pages[url.pathname] : this.defaultPage(url.pathname);
    if (page) {
      counted = url.pathname;
      req.resume();
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(405, 'method not allowed');
        return;
      }
      const failed = (e: unknown): HttpPage => ({ status: 500, body: `cannot render ${url.pathname}: ${e instanceof Error ? e.message : String(e)}`, type: 'text/plain; charset=utf-8' });
      let p: HttpPage | Promise<HttpPage>;
      try {
        p = page();
      } catch (e) {
        p = failed(e);
      }
      if (p instanceof Promise) {
        // The client may be gone by then: send() writes nothing once the response is over.
        p.catch(failed).then((v) => send(v.status, v.body, v.type));
      } else {
        send(p.status, p.body, p.type);
      }
      return;
    }
    if (url.pathname === '/health') {
      counted = url.pathname;
      if (req.method === 'GET' || req.method === 'HEAD') send(200, 'OK');
      else send(405, 'method not allowed');
      return;
    }
    if (url.pathname !== METADATA_PATH || this.options.metadata === false) {
      req.resume();
      send(404, 'not found');
      return;
    }
    counted = METADATA_PATH;
    const key = url.searchParams.get('key') ?? '';
    if (key.trim().length === 0) {
      req.resume();
      send(400, 'metadata key is required');
      return;
    }
    switch (req.method) {
      case 'GET': {
        const v = this.store.get(key);
        if (v === undefined) send(404, 'metadata not found');
        else send(200, v, 'application/json; charset=utf-8');
        return;
      }
      case 'DELETE': {
        if (!this.store.has(key)) {
          send(404, 'metadata not found');
          return;
        }
        this.store.delete(key);
        this.persist(key, null).then(
          () => send(200, 'metadata deleted'),
          (e: Error) => send(500, `cannot persist the deletion: ${e.message}`),
        );
        return;
      }
      case 'PUT':
        this.readBody(req, (status, body) => {
          if (status !== 200 || !body) {
            send(status, status === 413 ? `body larger than ${MAX_BODY_BYTES} bytes` : 'invalid request');
            return;
          }
          const old = this.store.get(key);
          if (old !== undefined && key.includes('rpc_meta')) {
            if (old.equals(body)) send(200, 'metadata unchanged');
            else send(400, 'Duplicate rpc_meta key not allowed');
            return;
          }
          this.store.set(key, body);
          this.persist(key, body).then(
            () => send(200, 'metadata updated'),
            (e: Error) => {
              // Memory follows the disk: a value that could not be made durable is not served.
              if (this.store.get(key) === body) {
                if (old === undefined) this.store.delete(key);
                else this.store.set(key, old);
              }
              send(500, `cannot persist the value: ${e.message}`);
            },
          );
        });
        return;
      default:
        req.resume();
        res.setHeader('Allow', 'GET, PUT, DELETE');
        send(405, 'method not allowed');
    }
  }

  /** The whole body, or an error status. A body cut short (client gone) is dropped: nothing half-received is stored. */
  private readBody(req: http.IncomingMessage, done: (status: number, body: Buffer | null) => void): void {
    const chunks: Buffer[] = [];
    let size = 0;
    let finished = false;
    const finish = (status: number, body: Buffer | null): void => {
      if (finished) return;
      finished = true;
      done(status, body);
    };
    req.on('data', (c: Buffer) => {
      if (finished) return; // refused already: the rest is drained and dropped
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        chunks.length = 0;
        finish(413, null);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => finish(200, Buffer.concat(chunks)));
    req.on('error', () => {
      finished = true; // aborted mid-body: no answer can reach the client anyway
    });
    req.on('close', () => {
      if (!req.complete) finished = true;
    });
  }
}
