/**
 * The engine's view of a central metadata store: publishes this engine's
 * segment (rpc_meta, then the descriptor, as Mooncake does at init; the
 * descriptor again on every registration change; both deleted on close) and
 * looks up peers' segments.
 *
 * Re-publishing is serialized and coalesced: only the newest descriptor is
 * written, an older one never overwrites a newer one, and a failed write is
 * retried in the background until it lands or the engine closes. Every value
 * is written whole by one PUT/SET, so readers never see half a descriptor.
 */
import type { SegmentDesc } from '../codec/descriptor.js';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import type { MetadataKeys } from './keys.js';
import type { MetadataStore } from './store.js';
import { decodeDescriptorValue, decodeRpcMeta, encodeDescriptorValue, encodeRpcMeta, type RpcMeta } from './values.js';

/** Does an engine still answer at this RPC address under this segment name? */
export type LivenessProbe = (meta: RpcMeta, name: string) => Promise<boolean>;

export interface FetchedSegment {
  desc: SegmentDesc;
  rpcMeta: RpcMeta;
}

const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 5000;

interface FlushWaiter {
  version: number;
  resolve: () => void;
  reject: (e: TransferEngineError) => void;
}

export class SegmentDirectory {
  private own: { name: string; rpcMeta: RpcMeta; descriptor: () => SegmentDesc } | null = null;
  /** Bumped by every change of our descriptor; `published` is the newest version written. */
  private version = 0;
  private published = 0;
  private writing: Promise<void> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDelay = RETRY_MIN_MS;
  private waiters: FlushWaiter[] = [];
  private stopped = false;
  /** Keys we wrote: close deletes only those (never a live namesake's rpc_meta we were refused). */
  private wroteRpcMeta = false;
  private wroteSegment = false;

  constructor(
    readonly store: MetadataStore,
    readonly keys: MetadataKeys,
    private readonly isLive: LivenessProbe,
    /** TE_MAX_DESCRIPTOR_SIZE: a longer stored descriptor is refused before it is parsed. */
    private readonly maxDescriptorSize?: number,
  ) {
    // A store that lost our keys (Redis restarted empty): write both again.
    store.onReconnect?.(() => this.republish());
  }

  /** Write rpc_meta and the descriptor again, in the background (a store that lost them, e.g. restarted empty). */
  republish(): void {
    if (!this.own || this.stopped) return;
    this.rpcMetaDirty = true;
    this.descriptorChanged();
  }

  /** rpc_meta must be written again before the next descriptor. */
  private rpcMetaDirty = false;

  get label(): string {
    return this.store.label;
  }

  // ------------------------------------------------------------ our segment

  /** First publication, at init: rpc_meta, then the descriptor. Throws the store's error. */
  async publish(name: string, rpcMeta: RpcMeta, descriptor: () => SegmentDesc): Promise<void> {
    this.own = { name, rpcMeta, descriptor };
    await this.putRpcMeta(name, rpcMeta);
    this.wroteRpcMeta = true;
    const v = ++this.version;
    this.wroteSegment = true; // a failed PUT may still have landed
    await this.store.put(this.keys.segment(name), encodeDescriptorValue(descriptor(), this.store.newlineValues));
    this.published = v;
  }

  /**
   * Mooncake's Python and C++ HTTP servers refuse to overwrite an existing
   * rpc_meta key (400). An engine that crashed left its key behind, so a
   * restart under the same name would fail forever: if the recorded address no
   * longer answers as this segment, the stale key is replaced. A live engine
   * with the same name keeps it, and we fail with TE_METADATA_REJECTED.
   */
  private async putRpcMeta(name: string, meta: RpcMeta): Promise<void> {
    const key = this.keys.rpcMeta(name);
    const value = encodeRpcMeta(meta, this.store.newlineValues);
    // etcd and Redis overwrite: look first, or we would take a live engine's name from under it.
    // (An identical value is our own address: whoever wrote it is gone, since we hold its port.)
    const existing = await this.store.get(key);
    if (existing !== null && existing !== value) await this.evictUnlessLive(existing, key, name);
    try {
      await this.store.put(key, value);
      return;
    } catch (e) {
      if (!(e instanceof TransferEngineError) || e.code !== ErrorCode.METADATA_REJECTED) throw e;
      // HTTP stores refuse to overwrite rpc_meta: another engine wrote it since we looked.
      const now = await this.store.get(key);
      if (now !== null) await this.evictUnlessLive(now, key, name, e);
    }
    await this.store.put(key, value);
  }

  /** Delete a namesake's rpc_meta unless the engine it names still answers under `name` (then refuse). */
  private async evictUnlessLive(text: string, key: string, name: string, cause?: unknown): Promise<void> {
    let old: RpcMeta | null = null;
    try {
      old = decodeRpcMeta(text, key);
    } catch {
      old = null; // garbage: nobody can be reached through it
    }
    if (old && (await this.isLive(old, name))) {
      throw teError(
        ErrorCode.METADATA_REJECTED,
        `segment name "${name}" is in use: ${key} at ${this.label} points to ${old.ipOrHostName}:${old.rpcPort}, which still answers`,
        cause,
      );
    }
    await this.store.delete(key);
  }

  /** Our descriptor changed (memory registered or unregistered, a transport installed): write it again. */
  descriptorChanged(): void {
    if (!this.own || this.stopped) return;
    this.version++;
    if (this.retryTimer) {
      // A failed write is waiting to be retried: retry now with the newest descriptor.
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    this.pump();
  }

  /**
   * Resolves once the descriptor as of now is in the store. Rejects with the
   * store's error if the current attempt fails (a retry goes on in the background).
   */
  flush(): Promise<void> {
    if (!this.own || this.published >= this.version) return Promise.resolve();
    if (this.stopped) return Promise.reject(teError(ErrorCode.CLOSED, 'the engine is closed'));
    return new Promise((resolve, reject) => {
      this.waiters.push({ version: this.version, resolve, reject });
      if (this.retryTimer) {
        clearTimeout(this.retryTimer);
        this.retryTimer = null;
        this.pump();
      }
    });
  }

  private pump(): void {
    if (this.writing || this.stopped || !this.own || this.published >= this.version) return;
    const own = this.own;
    const v = this.version;
    this.writing = (async () => {
      try {
        if (this.rpcMetaDirty) {
          await this.store.put(this.keys.rpcMeta(own.name), encodeRpcMeta(own.rpcMeta, this.store.newlineValues));
          this.rpcMetaDirty = false;
        }
        await this.store.put(this.keys.segment(own.name), encodeDescriptorValue(own.descriptor(), this.store.newlineValues));
        this.published = Math.max(this.published, v);
        this.retryDelay = RETRY_MIN_MS;
        this.settleWaiters(null);
      } catch (e) {
        const err = e instanceof TransferEngineError ? e : teError(ErrorCode.METADATA_UNAVAILABLE, String(e), e);
        this.settleWaiters(err);
        if (!this.stopped) {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = null;
            this.pump();
          }, this.retryDelay);
          this.retryTimer.unref();
          this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
        }
      } finally {
        this.writing = null;
      }
      if (!this.retryTimer) this.pump(); // changed again while we wrote
    })();
  }

  private settleWaiters(err: TransferEngineError | null): void {
    const keep: FlushWaiter[] = [];
    for (const w of this.waiters) {
      if (err) w.reject(err);
      else if (w.version <= this.published) w.resolve();
      else keep.push(w);
    }
    this.waiters = keep;
  }

  /** At close: stop re-publishing, delete the descriptor, then rpc_meta. Never throws; the store's bounded timeouts apply. */
  async unpublish(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    await this.writing?.catch(() => undefined);
    for (const w of this.waiters) w.reject(teError(ErrorCode.CLOSED, 'the engine closed before the descriptor was published'));
    this.waiters = [];
    const own = this.own;
    if (!own) return;
    if (this.wroteSegment) await this.store.delete(this.keys.segment(own.name)).catch(() => undefined);
    if (this.wroteRpcMeta) await this.store.delete(this.keys.rpcMeta(own.name)).catch(() => undefined);
  }

  // ------------------------------------------------------------ peers

  /** A peer's descriptor and RPC location. Missing: TE_INVALID_SEGMENT; garbage: TE_MALFORMED. */
  async fetchSegment(name: string): Promise<FetchedSegment> {
    const key = this.keys.segment(name);
    const text = await this.store.get(key);
    if (text === null) throw teError(ErrorCode.INVALID_SEGMENT, `no segment "${name}" is published at ${this.label} (key ${key})`);
    const desc = decodeDescriptorValue(text, key, this.maxDescriptorSize);
    // Mooncake looks rpc_meta up by the descriptor's own name.
    return { desc, rpcMeta: await this.fetchRpcMeta(desc.name) };
  }

  async fetchRpcMeta(name: string): Promise<RpcMeta> {
    const key = this.keys.rpcMeta(name);
    const text = await this.store.get(key);
    if (text === null) throw teError(ErrorCode.INVALID_SEGMENT, `segment "${name}" has no RPC location at ${this.label} (key ${key})`);
    return decodeRpcMeta(text, key);
  }

  async close(): Promise<void> {
    await this.unpublish();
    await this.store.close();
  }
}
