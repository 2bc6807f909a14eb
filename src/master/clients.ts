/**
 * Client liveness: the clients the master knows, when each was last heard
 * from, and which of them have been silent past the client TTL. What a
 * client's expiry does to its segments is the caller's (service.ts).
 */
import { ClientStatus, type UUID } from '../store/master-protocol.js';
import { ok, uuidKey, type Client, type Result } from './model.js';

export class ClientRegistry {
  private readonly clients = new Map<string, Client>();

  constructor(private readonly now: () => number) {}

  get size(): number {
    return this.clients.size;
  }

  get(id: UUID): Client | undefined {
    return this.clients.get(uuidKey(id));
  }

  /** The client, made known if it was not, seen now. */
  touch(id: UUID): Client {
    const k = uuidKey(id);
    let c = this.clients.get(k);
    if (!c) {
      c = { id, lastSeen: this.now(), segments: new Set(), hostId: '' };
      this.clients.set(k, c);
    }
    c.lastSeen = this.now();
    return c;
  }

  /** Clients become known by mounting (MountSegment, or ReMountSegment, even of no segment); other calls do not. */
  ping(clientId: UUID): Result<{ viewVersionId: bigint; clientStatus: number }> {
    const c = this.clients.get(uuidKey(clientId));
    if (!c) {
      // Unknown (a restarted master, or expired): the client remounts, which makes it known.
      return ok({ viewVersionId: 0n, clientStatus: ClientStatus.NEED_REMOUNT });
    }
    c.lastSeen = this.now();
    return ok({ viewVersionId: 0n, clientStatus: ClientStatus.OK });
  }

  /** Forget every client silent longer than `ttlMs`, after `expired` has dealt with it. */
  expire(now: number, ttlMs: number, expired: (c: Client) => void): void {
    for (const [k, c] of this.clients) {
      if (c.lastSeen + ttlMs < now) {
        expired(c);
        this.clients.delete(k);
      }
    }
  }
}
