/**
 * High availability on etcd: one leader among the masters started with the
 * same `--ha etcd://...` and cluster id, its state committed to etcd before
 * any reply that depends on it, and a standby that takes over with all of it.
 *
 *   transfer-engine/master/<cluster>/leader    the election: created (if absent) with the
 *                                              candidate's lease; its create revision fences
 *                                              every later write of that leader
 *   transfer-engine/master/<cluster>/s/<id>    one record per segment (records.ts)
 *   transfer-engine/master/<cluster>/o/<b64>   one record per object (tenant and key, base64url)
 *   mooncake-store/<cluster>/master_view       the leader's RPC address, under the same lease,
 *                                              written once it serves: where Mooncake's clients
 *                                              (master address `etcd://...`) and ours find it
 *
 * A leader whose lease is lost (etcd unreachable past the TTL) or whose
 * fenced write fails has been replaced or may be: it stops serving at once
 * (the process exits), so two leaders never answer together.
 */
import { Etcd3, type Lease } from 'etcd3';
import { teError, ErrorCode } from '../errors.js';
import { decodeObjectRecord, decodeSegmentRecord, encodeObjectRecord, encodeSegmentRecord, type ChangeSet, type StateSnapshot } from './records.js';

import { masterViewKey } from '../store/master-view.js';

const prefix = (cluster: string): string => `transfer-engine/master/${cluster}/`;
/** etcd's default limit of operations in one transaction is 128: commits go in chunks below it. */
const TXN_OPS = 100;
const CALL_TIMEOUT_MS = 5000;

export interface HaOptions {
  /** etcd endpoints, `http://host:port`. */
  endpoints: string[];
  clusterId: string;
  /** Who campaigns (host:port as configured; the leader key's value, for operators). */
  advertise: string;
  /** Seconds the leadership outlives a leader that stops renewing it (its death). */
  leaseTtlS: number;
  /** How often a standby looks for a vacant leadership. */
  pollMs?: number;
}

export class EtcdHa {
  private readonly client: Etcd3;
  private lease: Lease | null = null;
  /** The create revision of our leader key: the fence of our writes. */
  private fence = '';
  private closed = false;
  private onDeposed: ((why: string) => void) | null = null;

  constructor(private readonly options: HaOptions) {
    this.client = new Etcd3({
      hosts: options.endpoints,
      dialTimeout: CALL_TIMEOUT_MS,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
    });
  }

  private get leaderKey(): string {
    return `${prefix(this.options.clusterId)}leader`;
  }

  /** Called (once) when this leader loses its leadership: it must stop serving. */
  deposed(handler: (why: string) => void): void {
    this.onDeposed = handler;
  }

  private depose(why: string): void {
    const h = this.onDeposed;
    this.onDeposed = null;
    h?.(why);
  }

  /**
   * Wait until this process leads: a lease, then the leader key created under
   * it if absent (a transaction); while another holds it, poll. Resolves once
   * leader. Rejects after close().
   */
  async acquire(): Promise<void> {
    const poll = this.options.pollMs ?? 500;
    while (!this.closed) {
      let lease: Lease | null = null;
      try {
        lease = this.client.lease(this.options.leaseTtlS, { autoKeepAlive: true });
        const id = await lease.grant();
        const txn = await this.client
          .if(this.leaderKey, 'Create', '==', 0)
          .then(this.client.put(this.leaderKey).value(this.options.advertise).lease(id))
          .commit();
        if (txn.succeeded) {
          const got = await this.client.get(this.leaderKey).exec();
          const kv = got.kvs[0];
          if (!kv || kv.lease !== id) throw teError(ErrorCode.PROTOCOL_ERROR, 'etcd: the leader key is not ours right after creating it');
          this.fence = kv.create_revision;
          this.lease = lease;
          lease.on('lost', (e) => this.depose(`the etcd lease was lost (${e.message})`));
          return;
        }
      } catch {
        // etcd unreachable, or the key vanished between our create and read: try again; a standby serves nothing meanwhile.
      }
      // Not the leader this time: our lease goes (its keep-alives with it).
      await lease?.revoke().catch(() => undefined);
      if (this.closed) break;
      await new Promise((r) => setTimeout(r, poll));
    }
    throw teError(ErrorCode.CLOSED, 'HA: stopped before becoming the leader');
  }

  /** Our RPC address (host:port) in the view key (Mooncake's clients read it), under our lease: it goes with us. */
  async publishView(address: string): Promise<void> {
    if (!this.lease) throw teError(ErrorCode.NOT_INITIALIZED, 'HA: not the leader');
    await this.lease.put(masterViewKey(this.options.clusterId)).value(address);
  }

  /** Everything the previous leaders committed. */
  async load(): Promise<StateSnapshot> {
    const p = prefix(this.options.clusterId);
    const segs = await this.client.getAll().prefix(`${p}s/`).strings();
    const objs = await this.client.getAll().prefix(`${p}o/`).strings();
    return { segments: Object.values(segs).map(decodeSegmentRecord), objects: Object.values(objs).map(decodeObjectRecord) };
  }

  /**
   * Write a change set, fenced by our leadership: if the leader key is not the
   * one we created, nothing is written and we are deposed (another leads).
   */
  async commit(changes: ChangeSet): Promise<void> {
    const p = prefix(this.options.clusterId);
    const ops = [
      ...[...changes.segments].map(([k, v]) => (v === null ? this.client.delete().key(`${p}s/${k}`) : this.client.put(`${p}s/${k}`).value(encodeSegmentRecord(v)))),
      ...[...changes.objects].map(([k, v]) => {
        const key = `${p}o/${Buffer.from(k, 'utf8').toString('base64url')}`;
        return v === null ? this.client.delete().key(key) : this.client.put(key).value(encodeObjectRecord(v));
      }),
    ];
    for (let i = 0; i < ops.length; i += TXN_OPS) {
      const txn = await this.client.if(this.leaderKey, 'Create', '==', this.fence).then(...ops.slice(i, i + TXN_OPS)).commit();
      if (!txn.succeeded) {
        this.depose('another master holds the leadership');
        throw teError(ErrorCode.CLOSED, 'HA: no longer the leader; the change was not committed');
      }
    }
  }

  /** Step down: revoke the lease (the leader and view keys go at once, a standby takes over) and disconnect. */
  async close(): Promise<void> {
    this.closed = true;
    this.onDeposed = null;
    await this.lease?.revoke().catch(() => undefined);
    this.client.close();
  }
}
