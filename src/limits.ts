/**
 * Limits against abusive peers, shared by the RPC and data listeners:
 * connections per peer address, and a token bucket of new handshakes per
 * peer address. Both key on the remote IP; entries go away when unused, so
 * the maps stay as small as the set of peers currently connected.
 */

/** Open connections per remote address, refused above `max`. */
export class ConnectionsPerAddress {
  private readonly open = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** Count a new connection; false (and nothing counted) when the address is at its limit. */
  tryAdd(address: string): boolean {
    const n = this.open.get(address) ?? 0;
    if (n >= this.max) return false;
    this.open.set(address, n + 1);
    return true;
  }

  remove(address: string): void {
    const n = this.open.get(address);
    if (n === undefined) return;
    if (n <= 1) this.open.delete(address);
    else this.open.set(address, n - 1);
  }
}

/**
 * A token bucket per remote address: `burst` tokens, refilled at `ratePerSec`.
 * Buckets that would be full again are dropped when the map grows, so a flood
 * of addresses costs no more than the addresses active in the last seconds.
 */
export class RatePerAddress {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Take one token; false when the address has none left. */
  take(address: string): boolean {
    const t = this.now();
    let b = this.buckets.get(address);
    if (!b) {
      if (this.buckets.size >= 4096) this.prune(t);
      b = { tokens: this.burst, at: t };
      this.buckets.set(address, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) * this.ratePerSec) / 1000);
      b.at = t;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private prune(t: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((t - b.at) * this.ratePerSec) / 1000 >= this.burst) this.buckets.delete(k);
    }
  }
}

/** Settings of the listeners' limits (EngineConfig holds them; see README, Security). */
export interface ListenerLimits {
  /** Connections per remote address on the data port (TE_MAX_DATA_CONNECTIONS_PER_PEER). */
  maxDataConnectionsPerPeer: number;
  /** Connections per remote address on the RPC port (TE_MAX_RPC_CONNECTIONS_PER_PEER). */
  maxRpcConnectionsPerPeer: number;
  /** Responses a data connection may have queued, not yet taken by the kernel, before it stops reading (TE_MAX_REQUESTS_IN_FLIGHT). */
  maxRequestsInFlight: number;
  /** New RPC connections per second per remote address, and the burst allowed (TE_HANDSHAKE_RATE, TE_HANDSHAKE_BURST). */
  handshakeRate: number;
  handshakeBurst: number;
  /** A connection in the middle of something that makes no progress for this long is closed (TE_STALL_TIMEOUT_MS). */
  stallTimeoutMs: number;
  /**
   * TCP keepalive on data connections after this long idle (TE_TCP_KEEPALIVE_MS; 0: off). An idle
   * connection whose peer vanished (its reset lost while the link was down, its host gone) is otherwise
   * held open for ever, and counts against the connections allowed per peer.
   */
  keepAliveMs: number;
}

/** The defaults (src/env.ts's defaults of the variables config.ts reads): generous for any honest peer. */
export const DEFAULT_LIMITS: ListenerLimits = {
  maxDataConnectionsPerPeer: 1024,
  maxRpcConnectionsPerPeer: 256,
  maxRequestsInFlight: 4096,
  handshakeRate: 1000,
  handshakeBurst: 2000,
  stallTimeoutMs: 30_000,
  keepAliveMs: 15_000,
};
