/**
 * The RPC port (reference §2.5): one framed JSON exchange per connection.
 * Serves Metadata (our descriptor), Notify (queued for getNotifies), Probe, and
 * answers Connection (RDMA bootstrap) with a non-empty reply_msg, which tells a
 * Mooncake peer that this host cannot do RDMA. Also the client side of the
 * same exchange.
 */
import net from 'node:net';
import {
  HandshakeType,
  HandshakeFrameDecoder,
  encodeHandshakeFrame,
  type HandshakeFrame,
} from './codec/handshake.js';
import { parseJson, isJsonObject } from './codec/json.js';
import { teError, ErrorCode, TransferEngineError } from './errors.js';
import { closeServer, listenInRange } from './net.js';

/** Per-connection read deadline on the server (Mooncake uses SO_RCVTIMEO 5 s). */
const SERVER_READ_TIMEOUT_MS = 5000;

export interface Notification {
  name: string;
  msg: string;
}

export interface HandshakeHandlers {
  /** Our current descriptor JSON, or null when this engine does not serve metadata (central modes). */
  metadata(): string | null;
  notify(n: Notification): void;
}

export class HandshakeServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(
    private readonly handlers: HandshakeHandlers,
    private readonly maxFrame: number,
  ) {
    this.server = net.createServer((s) => this.serve(s));
    this.server.on('error', () => {
      /* reported by listen() */
    });
  }

  async listen(host: string, port: number, min: number, max: number): Promise<number> {
    this.port = await listenInRange(this.server, host, port, min, max);
    return this.port;
  }

  private serve(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.setNoDelay(true);
    sock.setTimeout(SERVER_READ_TIMEOUT_MS, () => sock.destroy());
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    const decoder = new HandshakeFrameDecoder(this.maxFrame);
    sock.on('data', (chunk: Buffer) => {
      let frame: HandshakeFrame | null;
      try {
        frame = decoder.push(chunk);
      } catch {
        sock.destroy(); // bad length or trailing bytes: nothing sensible to answer
        return;
      }
      if (!frame) return;
      sock.removeAllListeners('data');
      const reply = this.dispatch(frame);
      if (reply === null) {
        sock.destroy(); // Mooncake closes without a reply when the JSON does not parse
        return;
      }
      sock.end(encodeHandshakeFrame(frame.type, reply));
    });
  }

  /** The reply JSON for a frame, or null to close without replying. */
  private dispatch(frame: HandshakeFrame): string | null {
    let body;
    try {
      body = parseJson(frame.json);
    } catch {
      return null;
    }
    switch (frame.type) {
      case HandshakeType.METADATA:
        return `${this.handlers.metadata() ?? 'null'}\n`;
      case HandshakeType.NOTIFY: {
        if (!isJsonObject(body)) return null;
        const name = body['name'];
        const msg = body['notify_msg'];
        this.handlers.notify({ name: typeof name === 'string' ? name : '', msg: typeof msg === 'string' ? msg : '' });
        return '{"name":"","notify_msg":"success"}\n';
      }
      case HandshakeType.PROBE:
        return '{"status":"success"}\n';
      default:
        // Connection (RDMA queue-pair bootstrap) or a legacy frame: a non-empty reply_msg is a refusal.
        return `${JSON.stringify({
          local_nic_path: '',
          peer_nic_path: '',
          qp_num: [],
          reply_msg: 'this engine has no RDMA: TCP only (RDMA is not supported on this host)',
        })}\n`;
    }
  }

  async close(): Promise<void> {
    const done = closeServer(this.server);
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await done;
  }
}

export interface ExchangeOptions {
  connectTimeoutMs: number;
  /** Total deadline for the reply. */
  timeoutMs: number;
  maxFrame: number;
  /** Aborting ends the exchange at once with TE_CLOSED (the engine is closing). */
  signal?: AbortSignal;
}

/**
 * One exchange with a peer's RPC port: send a frame, read the reply, close
 * promptly (a C++ peer serves handshakes one at a time and waits for our close).
 */
export function exchange(host: string, port: number, type: HandshakeType, json: string, opts: ExchangeOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const label = `${host}:${port}`;
    let settled = false;
    const decoder = new HandshakeFrameDecoder(opts.maxFrame);
    const sock = net.connect({ host, port, noDelay: true, ...(net.isIP(host) === 0 ? { family: 4 } : {}) });
    const onAbort = (): void => finish(teError(ErrorCode.CLOSED, `handshake with ${label} abandoned: the engine is closing`));
    const finish = (err: TransferEngineError | null, value?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      clearTimeout(totalTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      sock.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    const connectTimer = setTimeout(
      () => finish(teError(ErrorCode.PEER_UNREACHABLE, `connecting to ${label} timed out after ${opts.connectTimeoutMs} ms`)),
      opts.connectTimeoutMs,
    );
    const totalTimer = setTimeout(
      () => finish(teError(ErrorCode.TIMEOUT, `no handshake reply from ${label} within ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort);
    sock.once('connect', () => {
      clearTimeout(connectTimer);
      sock.write(encodeHandshakeFrame(type, json));
    });
    sock.on('error', (e: NodeJS.ErrnoException) =>
      finish(teError(ErrorCode.PEER_UNREACHABLE, `handshake with ${label} failed: ${e.code ?? e.message}`, e)),
    );
    sock.on('data', (chunk: Buffer) => {
      let frame: HandshakeFrame | null;
      try {
        frame = decoder.push(chunk);
      } catch (e) {
        finish(e instanceof TransferEngineError ? e : teError(ErrorCode.PROTOCOL_ERROR, String(e)));
        return;
      }
      if (!frame) return;
      if (frame.type !== type) {
        finish(teError(ErrorCode.PROTOCOL_ERROR, `${label} answered a type-${type} handshake with type ${frame.type}`));
        return;
      }
      finish(null, frame.json);
    });
    sock.on('end', () => finish(teError(ErrorCode.PEER_UNREACHABLE, `${label} closed the handshake without a complete reply`)));
  });
}
