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
import type { MemoryRegistry } from '../../memory.js';
import { closeServer, listenInRange } from '../../net.js';
import { ConnectionsPerAddress, DEFAULT_LIMITS, type ListenerLimits } from '../../limits.js';
import { ServerConnection, WRITE_WINDOW, type ConnectionHost, type DataServerStats } from './connection.js';
import type { FileServeContext } from './file-serve.js';
import { RegistryTargets, type Targets } from './targets.js';

export type { DataServerStats } from './connection.js';

export interface DataServerOptions {
  /** Require our shared-secret authentication before the first request. */
  authSecret?: Uint8Array | undefined;
  /** This engine's id, confirmed to clients that check it (src/codec/wire.ts, engine identity); absent: every check fails. */
  engineId?: number;
  limits?: Pick<ListenerLimits, 'maxDataConnectionsPerPeer' | 'maxRequestsInFlight' | 'stallTimeoutMs' | 'keepAliveMs'>;
}

export class TcpDataServer implements ConnectionHost {
  private readonly server: net.Server;
  private readonly conns = new Set<ServerConnection>();
  readonly stats: DataServerStats = { connections: 0, requests: 0, rejected: 0, refused: 0, authRejected: 0, stalled: 0, peakQueued: 0 };
  port = 0;
  readonly authSecret: Uint8Array | undefined;
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
    const conn = ServerConnection.accept(this, accepted);
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
    await done;
  }
}
