/**
 * Target side of the Mooncake-compatible TCP data protocol: the listener. It
 * accepts connections (one ServerConnection each, connection.ts), enforces
 * the per-address connection limit, and sweeps for stalled connections.
 *
 * Idle connections are never closed (pooled Mooncake clients reuse them); a
 * connection in the middle of something (a partial header or body, responses
 * the client does not read, unfinished authentication) that makes no
 * progress for the stall timeout is.
 *
 * Limits (src/limits.ts): connections per peer address, responses queued per
 * connection (beyond them the server stops reading that connection), and,
 * with a shared secret, our authentication before the first request byte is
 * looked at (src/auth.ts).
 */
import net from 'node:net';
import tls from 'node:tls';
import type { MemoryRegistry } from '../../memory.js';
import { closeServer, listenInRange } from '../../net.js';
import { ConnectionsPerAddress, DEFAULT_LIMITS, type ListenerLimits } from '../../limits.js';
import { ServerConnection, WRITE_WINDOW, type ConnectionHost, type DataServerStats } from './connection.js';
import type { FileServeContext } from './file-serve.js';
import { RegistryTargets, type Targets } from './targets.js';
import { clientNameError, tlsServerOptions, type TlsSettings } from '../../tls.js';

export type { DataServerStats } from './connection.js';

export interface DataServerOptions {
  /** Require our shared-secret authentication before the first request. */
  authSecret?: Uint8Array | undefined;
  /** Take only mutual TLS (src/tls.ts); the handshake must finish within the stall timeout. */
  tls?: TlsSettings | undefined;
  /** This engine's id, confirmed to clients that check it (src/codec/wire.ts, engine identity); absent: every check fails. */
  engineId?: number;
  limits?: Pick<ListenerLimits, 'maxDataConnectionsPerPeer' | 'maxRequestsInFlight' | 'stallTimeoutMs' | 'keepAliveMs'>;
}

export class TcpDataServer implements ConnectionHost {
  private readonly server: net.Server;
  private readonly conns = new Set<ServerConnection>();
  /** TLS connections still in their handshake. */
  private readonly pending = new Set<tls.TLSSocket>();
  /** TLS connections past it, served by a ServerConnection (which frees their address's slot on close). */
  private readonly served = new WeakSet<net.Socket>();
  readonly stats: DataServerStats = { connections: 0, requests: 0, rejected: 0, refused: 0, authRejected: 0, tlsRejected: 0, stalled: 0, peakQueued: 0 };
  port = 0;
  readonly authSecret: Uint8Array | undefined;
  readonly tls: TlsSettings | undefined;
  readonly engineId: number | undefined;
  readonly maxInFlight: number;
  readonly stallMs: number;
  /** TCP keepalive delay for accepted connections (0: off). */
  readonly keepAliveMs: number;
  /** Where requests are looked up: `registry`, and the files of `files`. */
  readonly targets: Targets;
  private readonly perAddress: ConnectionsPerAddress;
  private sweepTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly registry: MemoryRegistry,
    /** Registered files, for our file requests; null: every file request is rejected. */
    readonly files: FileServeContext | null = null,
    options: DataServerOptions = {},
  ) {
    const limits = options.limits ?? DEFAULT_LIMITS;
    this.authSecret = options.authSecret;
    this.tls = options.tls;
    this.engineId = options.engineId;
    this.maxInFlight = limits.maxRequestsInFlight;
    this.stallMs = limits.stallTimeoutMs;
    this.keepAliveMs = limits.keepAliveMs;
    this.targets = new RegistryTargets(registry, files?.files ?? null);
    this.perAddress = new ConnectionsPerAddress(limits.maxDataConnectionsPerPeer);
    // highWaterMark: the accepted sockets' own, which only a Node without handle takeover keeps (node-internals.ts).
    this.server = net.createServer({ pauseOnConnect: true, noDelay: true, highWaterMark: WRITE_WINDOW }, (s) => this.adopt(s));
    this.server.on('error', () => {
      /* listen errors are reported by listen(); later errors leave existing connections alone */
    });
  }

  async listen(host: string, port: number, minPort: number, maxPort: number): Promise<number> {
    this.port = await listenInRange(this.server, host, port, minPort, maxPort);
    return this.port;
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  private adopt(accepted: net.Socket): void {
    const from = accepted.remoteAddress ?? '';
    if (!this.perAddress.tryAdd(from)) {
      this.stats.refused++;
      accepted.destroy(); // before a byte is read
      return;
    }
    if (this.tls) {
      this.handshake(accepted, this.tls, from);
      return;
    }
    this.serve(ServerConnection.accept(this, accepted), from);
  }

  /**
   * TLS first: a connection is served only once the handshake is done and the
   * client's certificate passed (the CA by OpenSSL, TE_TLS_PEER_NAME here),
   * all within the stall timeout. Refusals count in stats.tlsRejected, a
   * handshake not done in time in stats.stalled.
   */
  private handshake(accepted: net.Socket, settings: TlsSettings, from: string): void {
    const sock = new tls.TLSSocket(accepted, tlsServerOptions(settings));
    this.pending.add(sock);
    let settled = false;
    const refuse = (stalled: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (stalled) this.stats.stalled++;
      else this.stats.tlsRejected++;
      sock.destroy();
    };
    const timer = setTimeout(() => refuse(true), this.stallMs);
    timer.unref();
    const failed = (): void => refuse(false);
    sock.on('error', failed);
    sock.once('close', () => {
      this.pending.delete(sock);
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        this.stats.tlsRejected++; // closed by the client mid-handshake (it refused our certificate, say)
      }
      if (!this.served.has(sock)) this.perAddress.remove(from);
    });
    sock.once('secure', () => {
      if (settled) return;
      if (clientNameError(settings, sock)) {
        refuse(false);
        return;
      }
      settled = true;
      clearTimeout(timer);
      sock.off('error', failed);
      this.pending.delete(sock);
      this.served.add(sock);
      this.serve(ServerConnection.accept(this, sock, false), from);
    });
    accepted.resume(); // paused on connect
  }

  private serve(conn: ServerConnection | null, from: string): void {
    if (!conn) {
      this.perAddress.remove(from);
      return;
    }
    this.conns.add(conn);
    this.stats.connections++;
    conn.sock.once('close', () => {
      this.conns.delete(conn);
      this.perAddress.remove(from);
    });
    this.sweepTimer ??= setInterval(() => this.sweep(), Math.max(10, Math.min(1000, this.stallMs / 4))).unref();
  }

  /** Close connections stuck mid-request (their pins are released by the teardown). */
  private sweep(): void {
    if (this.conns.size === 0) {
      clearInterval(this.sweepTimer!);
      this.sweepTimer = null;
      return;
    }
    const now = performance.now();
    for (const c of this.conns) {
      if (c.stalled(now, this.stallMs)) {
        this.stats.stalled++;
        c.abort();
        this.conns.delete(c);
      }
    }
  }

  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    const done = closeServer(this.server);
    for (const c of this.conns) c.sock.destroy();
    this.conns.clear();
    for (const s of this.pending) s.destroy();
    this.pending.clear();
    await done;
  }
}
