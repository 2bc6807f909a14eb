/**
 * HTTP metadata client, as Mooncake's HTTPStoragePlugin
 * (transfer_metadata_plugin.cpp):
 * `GET|PUT|DELETE <url>?key=<curl-escaped key>`, only 200 counts (plus 404:
 * a missing key on GET, an already-deleted one on DELETE), PUT bodies are
 * compact JSON with Content-Type application/json. Connect is bounded by
 * 1.5 s and the whole call by the store timeout (3 s by default), like curl's
 * CURLOPT_CONNECTTIMEOUT_MS/CURLOPT_TIMEOUT_MS there.
 */
import http from 'node:http';
import https from 'node:https';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import type { MetadataStore, StoreOptions } from './store.js';

const CONNECT_TIMEOUT_MS = 1500;
const DEFAULT_TIMEOUT_MS = 3000;
/** Larger answers are refused rather than buffered (Mooncake's etcd allows 32 MiB messages). */
export const MAX_VALUE_BYTES = 32 * 1024 * 1024;

/** curl_easy_escape: every byte except ALPHA / DIGIT / "-" / "." / "_" / "~" becomes %XX (upper case). */
export function curlEscape(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const unreserved = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e;
    out += unreserved ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

interface HttpAnswer {
  status: number;
  body: string;
}

export class HttpMetadataStore implements MetadataStore {
  readonly newlineValues = false;
  readonly label: string;
  private readonly timeoutMs: number;
  private readonly inFlight = new Set<http.ClientRequest>();
  private closed = false;

  constructor(
    private readonly url: string,
    options: Pick<StoreOptions, 'timeoutMs'>,
  ) {
    this.label = url;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  async get(key: string): Promise<string | null> {
    const a = await this.request('GET', key);
    if (a.status === 200) return a.body;
    if (a.status === 404) return null;
    throw this.statusError('GET', key, a);
  }

  async put(key: string, value: string): Promise<void> {
    const a = await this.request('PUT', key, value);
    if (a.status !== 200) throw this.statusError('PUT', key, a);
  }

  async delete(key: string): Promise<void> {
    const a = await this.request('DELETE', key);
    if (a.status !== 200 && a.status !== 404) throw this.statusError('DELETE', key, a);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const r of this.inFlight) r.destroy(teError(ErrorCode.CLOSED, 'the metadata client was closed'));
    this.inFlight.clear();
  }

  private statusError(method: string, key: string, a: HttpAnswer): TransferEngineError {
    const body = a.body.trim().slice(0, 200);
    const what = `${method} ${key} at ${this.label}: HTTP ${a.status}${body ? ` (${body})` : ''}`;
    // 4xx: the server understood and refused (e.g. a duplicate rpc_meta key); anything else is a failure of the service.
    return a.status >= 400 && a.status < 500 ? teError(ErrorCode.METADATA_REJECTED, what) : teError(ErrorCode.METADATA_UNAVAILABLE, what);
  }

  private request(method: 'GET' | 'PUT' | 'DELETE', key: string, body?: string): Promise<HttpAnswer> {
    if (this.closed) return Promise.reject(teError(ErrorCode.CLOSED, 'the metadata client is closed'));
    const target = `${this.url}?key=${curlEscape(key)}`;
    const what = `${method} ${key} at ${this.label}`;
    return new Promise<HttpAnswer>((resolve, reject) => {
      let settled = false;
      const payload = body === undefined ? undefined : Buffer.from(body, 'utf8');
      const mod = target.startsWith('https:') ? https : http;
      const req = mod.request(target, {
        method,
        agent: false, // a fresh connection per call: no stale keep-alive socket after a server restart
        headers: payload ? { 'Content-Type': 'application/json', 'Content-Length': payload.length } : {},
      });
      const finish = (err: TransferEngineError | null, answer?: HttpAnswer): void => {
        if (settled) return;
        settled = true;
        clearTimeout(total);
        clearTimeout(connect);
        this.inFlight.delete(req);
        if (err) {
          req.destroy();
          reject(err);
        } else resolve(answer!);
      };
      this.inFlight.add(req);
      const total = setTimeout(() => finish(teError(ErrorCode.TIMEOUT, `${what}: no complete answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      const connect = setTimeout(
        () => finish(teError(ErrorCode.METADATA_UNAVAILABLE, `${what}: could not connect within ${Math.min(CONNECT_TIMEOUT_MS, this.timeoutMs)} ms`)),
        Math.min(CONNECT_TIMEOUT_MS, this.timeoutMs),
      );
      req.on('socket', (sock) => {
        if (!sock.connecting) clearTimeout(connect);
        else sock.once('connect', () => clearTimeout(connect));
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (e instanceof TransferEngineError) finish(e);
        else finish(teError(ErrorCode.METADATA_UNAVAILABLE, `${what}: ${e.code ?? e.message}`, e));
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_VALUE_BYTES) {
            finish(teError(ErrorCode.METADATA_UNAVAILABLE, `${what}: answer larger than ${MAX_VALUE_BYTES} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', (e: NodeJS.ErrnoException) => finish(teError(ErrorCode.METADATA_UNAVAILABLE, `${what}: ${e.code ?? e.message}`, e)));
        // A body cut short is never handed on: half a descriptor must not be decoded as one.
        res.on('close', () => {
          if (!res.complete) finish(teError(ErrorCode.METADATA_UNAVAILABLE, `${what}: the connection closed before the whole answer arrived`));
        });
        res.on('end', () => finish(null, { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      });
      req.end(payload);
    });
  }
}
