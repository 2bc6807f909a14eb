/**
 * etcd metadata store through the etcd3 client, with Mooncake's plain
 * Put/Get/Delete (EtcdStoragePlugin, transfer_metadata_plugin.cpp). The client
 * spreads calls over all
 * endpoints and retries a failed call on another member, so a dead member in
 * `etcd://h1:2379,h2:2379` is transparent while one member answers.
 *
 * Beyond Mooncake (opt-in, TE_METADATA_LEASE_TTL): puts are attached to a
 * lease kept alive while the engine runs, so the keys of an engine that
 * crashed expire instead of lingering. The keys and values are the same.
 */
import { Etcd3, type Lease, GRPCDeadlineExceededError, EtcdPermissionDeniedError, GRPCUnauthenticatedError, EtcdAuthenticationFailedError, ClientClosedError } from 'etcd3';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import { withTimeout, type MetadataStore, type StoreOptions } from './store.js';

const DEFAULT_TIMEOUT_MS = 5000;

export class EtcdMetadataStore implements MetadataStore {
  readonly newlineValues = true;
  readonly label: string;
  private readonly client: Etcd3;
  private readonly timeoutMs: number;
  private readonly leaseTtlS: number;
  private lease: Lease | null = null;
  /** Keys written under the lease, re-written if the lease is lost (etcd down longer than the TTL). */
  private readonly leased = new Map<string, string>();
  private regrantTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(endpoints: string[], options: Pick<StoreOptions, 'timeoutMs' | 'leaseTtlS'>) {
    this.label = `etcd://${endpoints.map((e) => e.replace(/^http:\/\//, '')).join(',')}`;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.leaseTtlS = options.leaseTtlS;
    const timeoutMs = this.timeoutMs;
    this.client = new Etcd3({
      hosts: endpoints,
      dialTimeout: timeoutMs,
      // A deadline on every unary call: a member that accepts but never answers cannot hang us.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeoutMs }),
    });
  }

  async get(key: string): Promise<string | null> {
    return this.call(`GET ${key}`, () => this.client.get(key).string());
  }

  async put(key: string, value: string): Promise<void> {
    if (this.leaseTtlS > 0) {
      const lease = this.currentLease();
      await this.call(`PUT ${key}`, async () => {
        await lease.put(key).value(value);
      });
      this.leased.set(key, value);
      return;
    }
    await this.call(`PUT ${key}`, async () => {
      await this.client.put(key).value(value);
    });
  }

  async delete(key: string): Promise<void> {
    this.leased.delete(key);
    await this.call(`DELETE ${key}`, async () => {
      await this.client.delete().key(key);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.regrantTimer) clearTimeout(this.regrantTimer);
    const lease = this.lease;
    this.lease = null;
    if (lease) await withTimeout(lease.revoke(), this.timeoutMs, 'revoking the etcd lease').catch(() => undefined);
    this.client.close();
  }

  private currentLease(): Lease {
    if (this.lease) return this.lease;
    const lease = this.client.lease(this.leaseTtlS);
    lease.on('lost', () => {
      // Expired or never granted: the keys under it are gone. Re-grant and re-write them.
      if (this.lease === lease) this.lease = null;
      this.scheduleRegrant(500);
    });
    this.lease = lease;
    return lease;
  }

  private scheduleRegrant(delayMs: number): void {
    if (this.closed || this.regrantTimer || this.leased.size === 0) return;
    this.regrantTimer = setTimeout(() => {
      this.regrantTimer = null;
      void this.rewriteLeased().catch(() => this.scheduleRegrant(Math.min(delayMs * 2, 5000)));
    }, delayMs);
    this.regrantTimer.unref();
  }

  private async rewriteLeased(): Promise<void> {
    for (const [key, value] of [...this.leased]) {
      if (this.closed) return;
      if (this.leased.get(key) !== value) continue; // rewritten or deleted meanwhile
      await this.put(key, value);
    }
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw teError(ErrorCode.CLOSED, 'the etcd metadata client is closed');
    try {
      return await withTimeout(fn(), this.timeoutMs, `${what} at ${this.label}`);
    } catch (e) {
      throw this.mapError(e, `${what} at ${this.label}`);
    }
  }

  private mapError(e: unknown, what: string): TransferEngineError {
    if (e instanceof TransferEngineError) return e;
    const msg = e instanceof Error ? e.message : String(e);
    if (e instanceof GRPCDeadlineExceededError) return teError(ErrorCode.TIMEOUT, `${what}: no answer within ${this.timeoutMs} ms`, e);
    if (e instanceof EtcdPermissionDeniedError || e instanceof GRPCUnauthenticatedError || e instanceof EtcdAuthenticationFailedError) {
      return teError(ErrorCode.METADATA_REJECTED, `${what}: ${msg}`, e);
    }
    if (e instanceof ClientClosedError) return teError(ErrorCode.CLOSED, `${what}: the etcd client is closed`, e);
    return teError(ErrorCode.METADATA_UNAVAILABLE, `${what}: ${msg}`, e);
  }
}
