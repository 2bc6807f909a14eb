/**
 * The RPC port (Mooncake's SocketHandShakePlugin, transfer_metadata_plugin.cpp):
 * one framed JSON exchange per connection.
 * Serves Metadata (our descriptor), Notify (queued for getNotifies), Probe, and
 * answers Connection (RDMA bootstrap) with a non-empty reply_msg, which tells a
 * Mooncake peer that this host cannot do RDMA. Also the client side of the
 * same exchange.
 */
import net from 'node:net';
import tls from 'node:tls';
import { AuthClientSide, AuthServerSide, authRequiredError } from '../auth.js';
import { AuthKind, REJECT_FRAME, RESPONSE_SIZE, authKindAt } from '../codec/auth.js';
import {
  HandshakeType,
  HandshakeFrameDecoder,
  encodeHandshakeFrame,
  type HandshakeFrame,
} from '../codec/handshake.js';
import { parseJson, isJsonObject } from '../codec/json.js';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import { ConnectionsPerAddress, RatePerAddress, DEFAULT_LIMITS, type ListenerLimits } from '../limits.js';
import { closeServer, listenInRange } from '../net.js';
import { clientNameError, tlsClientOptions, tlsError, tlsHandshakeEndedError, tlsServerOptions, type TlsSettings } from '../tls.js';

/** Per-connection read deadline on the server (Mooncake uses SO_RCVTIMEO 5 s). */
const SERVER_READ_TIMEOUT_MS = 5000;
/** After an authentication rejection, how long to wait for the client to close before dropping it. */
const REJECT_GRACE_MS = 2000;

export interface Notification {
  name: string;
  msg: string;
}

export interface HandshakeHandlers {
  /** Our current descriptor JSON, or null when this engine does not serve metadata (central modes). */
  metadata(): string | null;
  notify(n: Notification): void;
}

export interface HandshakeServerOptions {
  /** Require our shared-secret authentication (src/auth.ts) before reading a frame. */
  authSecret?: Uint8Array | undefined;
  /** Take only mutual TLS (src/tls.ts). */
  tls?: TlsSettings | undefined;
  limits?: Pick<ListenerLimits, 'maxRpcConnectionsPerPeer' | 'handshakeRate' | 'handshakeBurst' | 'stallTimeoutMs'>;
}

export interface HandshakeServerStats {
  /** Connections accepted (within the limits). */
  connections: number;
  /** Connections closed at once: the address had too many open. */
  refused: number;
  /** Connections closed at once: the address opened them faster than TE_HANDSHAKE_RATE. */
  rateLimited: number;
  /** Connections whose authentication failed. */
  authRejected: number;
  /** TLS connections refused: the handshake failed (certificate, protocol) or the client's certificate lacks TE_TLS_PEER_NAME. */
  tlsRejected: number;
  /** Connections closed for sending too slowly (idle 5 s mid-exchange, or no complete frame within the stall timeout). */
  stalled: number;
}

export class HandshakeServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly perAddress: ConnectionsPerAddress;
  private readonly rate: RatePerAddress;
  private readonly authSecret: Uint8Array | undefined;
  private readonly tls: TlsSettings | undefined;
  private readonly stallMs: number;
  readonly stats: HandshakeServerStats = { connections: 0, refused: 0, rateLimited: 0, authRejected: 0, tlsRejected: 0, stalled: 0 };
  port = 0;

  constructor(
    private readonly handlers: HandshakeHandlers,
    private readonly maxFrame: number,
    options: HandshakeServerOptions = {},
  ) {
    const limits = options.limits ?? DEFAULT_LIMITS;
    this.perAddress = new ConnectionsPerAddress(limits.maxRpcConnectionsPerPeer);
    this.rate = new RatePerAddress(limits.handshakeRate, limits.handshakeBurst);
    this.stallMs = limits.stallTimeoutMs;
    this.authSecret = options.authSecret;
    this.tls = options.tls;
    this.server = net.createServer((s) => this.serve(s));
    this.server.on('error', () => {
      /* reported by listen() */
    });
  }

  async listen(host: string, port: number, min: number, max: number): Promise<number> {
    this.port = await listenInRange(this.server, host, port, min, max);
    return this.port;
  }

  private serve(raw: net.Socket): void {
    raw.on('error', () => raw.destroy());
    const from = raw.remoteAddress ?? '';
    // Checked before anything is read or sent: an abusive address costs an accept and a close.
    if (!this.rate.take(from)) {
      this.stats.rateLimited++;
      raw.destroy();
      return;
    }
    if (!this.perAddress.tryAdd(from)) {
      this.stats.refused++;
      raw.destroy();
      return;
    }
    this.stats.connections++;
    // With TLS, everything below runs on the decrypted stream; the deadline also bounds the TLS handshake.
    const tlsSettings = this.tls;
    const sock: net.Socket = tlsSettings ? new tls.TLSSocket(raw, tlsServerOptions(tlsSettings)) : raw;
    this.sockets.add(sock);
    sock.setNoDelay(true);
    let replied = false;
    const stalled = (): void => {
      if (sock.destroyed) return; // the idle timeout and the deadline can both fire
      if (!replied) this.stats.stalled++; // after the reply, only waiting for the client's close
      sock.destroy();
    };
    // Idle for 5 s at any point, or no complete frame (and authentication) within the stall timeout: closed.
    sock.setTimeout(Math.min(SERVER_READ_TIMEOUT_MS, this.stallMs), stalled);
    const deadline = setTimeout(stalled, this.stallMs);
    deadline.unref();
    sock.on('close', () => {
      clearTimeout(deadline);
      this.sockets.delete(sock);
      this.perAddress.remove(from);
    });
    let auth = this.authSecret ? new AuthServerSide(this.authSecret) : null;
    let authBytes: Buffer | null = null;
    if (tlsSettings) {
      let secure = false;
      sock.on('error', () => {
        if (!secure) this.stats.tlsRejected++; // a certificate OpenSSL refused, or a client without TLS
        sock.destroy();
      });
      sock.once('secure', () => {
        secure = true;
        if (clientNameError(tlsSettings, sock as tls.TLSSocket)) {
          this.stats.tlsRejected++;
          sock.destroy();
          return;
        }
        if (auth) sock.write(auth.challenge());
      });
    } else if (auth) sock.write(auth.challenge());
    const decoder = new HandshakeFrameDecoder(this.maxFrame, { trailing: 'ignore' });
    const onData = (data: Buffer): void => {
      let chunk = data;
      if (auth) {
        authBytes = authBytes ? Buffer.concat([authBytes, chunk]) : chunk;
        // A client that starts with anything but our answer (a Mooncake frame, say) is refused at its first 8 bytes.
        const early = authBytes.length >= 8 && authKindAt(authBytes) !== AuthKind.RESPONSE;
        if (!early && authBytes.length < RESPONSE_SIZE) return;
        const accept = early ? null : auth.verify(authBytes);
        if (!accept) {
          this.stats.authRejected++;
          replied = true;
          sock.off('data', onData);
          clearTimeout(deadline);
          sock.end(REJECT_FRAME);
          setTimeout(() => sock.destroy(), REJECT_GRACE_MS).unref();
          return;
        }
        auth = null;
        sock.write(accept);
        chunk = authBytes.subarray(RESPONSE_SIZE);
        authBytes = null;
        if (chunk.length === 0) return;
      }
      let frame: HandshakeFrame | null;
      try {
        frame = decoder.push(chunk);
      } catch {
        sock.destroy(); // bad length: nothing sensible to answer
        return;
      }
      if (!frame) return;
      sock.off('data', onData);
      clearTimeout(deadline);
      const reply = this.dispatch(frame);
      if (reply === null) {
        sock.destroy(); // Mooncake closes without a reply when the JSON does not parse
        return;
      }
      replied = true;
      sock.end(encodeHandshakeFrame(frame.type, reply));
    };
    sock.on('data', onData);
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
  /**
   * Our shared secret: the peer must authenticate (within connectTimeoutMs of
   * the connect) before the frame is sent; a peer that does not is TE_AUTH_FAILED.
   * Without it, a peer that asks for authentication is TE_AUTH_REQUIRED.
   */
  authSecret?: Uint8Array | undefined;
  /** Mutual TLS (src/tls.ts): the exchange runs inside it, and a peer that does not speak it is TE_TLS_FAILED. */
  tls?: TlsSettings | undefined;
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
    const auth = opts.authSecret ? new AuthClientSide(opts.authSecret, label) : null;
    /** Bytes of the authentication exchange not consumed yet; null once authenticated (or without a secret). */
    let authBytes: Buffer | null = auth ? Buffer.alloc(0) : null;
    let authTimer: NodeJS.Timeout | undefined;
    /** Without a secret: the reply's first bytes, until 8 have come (a challenge there means the peer wants a secret). */
    let prefix: Buffer | null = auth ? null : Buffer.alloc(0);
    const family = net.isIP(host) === 0 ? { family: 4 } : {};
    const tlsSettings = opts.tls;
    const sock: net.Socket = tlsSettings ? tls.connect({ host, port, ...family, ...tlsClientOptions(tlsSettings) }) : net.connect({ host, port, noDelay: true, ...family });
    if (tlsSettings) sock.setNoDelay(true);
    /** TLS: the TCP connection is up (a handshake that then stalls or ends is the peer's refusal of TLS). */
    let tcpUp = false;
    /** TLS: our handshake is done; the peer may still refuse our certificate right after (TLS 1.3), by an alert or a close. */
    let secured = false;
    let replyBytes = 0;
    const onAbort = (): void => finish(teError(ErrorCode.CLOSED, `handshake with ${label} abandoned: the engine is closing`));
    const finish = (err: TransferEngineError | null, value?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      clearTimeout(totalTimer);
      clearTimeout(authTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      sock.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    const connectTimer = setTimeout(
      () =>
        finish(
          tcpUp
            ? tlsHandshakeEndedError(label, `was silent for ${opts.connectTimeoutMs} ms`)
            : teError(ErrorCode.PEER_UNREACHABLE, `connecting to ${label} timed out after ${opts.connectTimeoutMs} ms`),
        ),
      opts.connectTimeoutMs,
    );
    const totalTimer = setTimeout(
      () => finish(teError(ErrorCode.TIMEOUT, `no handshake reply from ${label} within ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort);
    const connected = (): void => {
      clearTimeout(connectTimer);
      if (auth) authTimer = setTimeout(() => finish(auth.notAuthenticating()), opts.connectTimeoutMs);
      else sock.write(encodeHandshakeFrame(type, json));
    };
    if (tlsSettings) {
      sock.once('connect', () => (tcpUp = true));
      sock.once('secureConnect', () => {
        secured = true;
        connected();
      });
    } else sock.once('connect', connected);
    sock.on('error', (e: NodeJS.ErrnoException) =>
      finish(
        (tlsSettings && tlsError(label, e)) ||
          (tlsSettings && tcpUp && !secured ? tlsHandshakeEndedError(label, `failed (${e.code ?? e.message})`) : null) ||
          teError(ErrorCode.PEER_UNREACHABLE, `handshake with ${label} failed: ${e.code ?? e.message}`, e),
      ),
    );
    sock.on('data', (data: Buffer) => {
      replyBytes += data.length;
      let chunk = data;
      if (auth && authBytes) {
        const buf: Buffer = authBytes.length ? Buffer.concat([authBytes, chunk]) : chunk;
        let off = 0;
        let done = false;
        try {
          for (;;) {
            const st = auth.step(buf, off, buf.length);
            if (st.kind === 'more') break;
            off += st.consumed;
            if (st.kind === 'reply') {
              sock.write(st.reply);
              continue;
            }
            done = true;
            break;
          }
        } catch (e) {
          finish(e as TransferEngineError);
          return;
        }
        if (!done) {
          authBytes = buf.subarray(off);
          return;
        }
        authBytes = null;
        clearTimeout(authTimer);
        sock.write(encodeHandshakeFrame(type, json)); // only now: the peer proved it holds the secret
        chunk = buf.subarray(off);
        if (chunk.length === 0) return;
      } else if (prefix) {
        prefix = Buffer.concat([prefix, chunk.subarray(0, 8 - prefix.length)]);
        if (prefix.length >= 8) {
          if (authKindAt(prefix) === AuthKind.CHALLENGE) {
            finish(authRequiredError(label));
            return;
          }
          prefix = null;
        }
      }
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
    sock.on('end', () =>
      finish(
        tlsSettings && !secured
          ? tlsHandshakeEndedError(label, 'closed the connection')
          : auth && authBytes
            ? auth.notAuthenticating()
            : teError(
                ErrorCode.PEER_UNREACHABLE,
                `${label} closed the handshake without a complete reply${replyBytes > 0 ? '' : tlsSettings ? ' (with TLS, how a peer refuses our certificate)' : ' (how a peer that takes only mutual TLS answers clear text: give this engine TE_TLS_CERT, TE_TLS_KEY, TE_TLS_CA)'}`,
              ),
      ),
    );
  });
}
