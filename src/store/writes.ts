/**
 * put and upsert (Mooncake's two write calls), of one key or a batch, from a
 * value (copied through the local buffer) or from registered memory (no
 * copy). Each key: PutStart (the master places the replicas and answers
 * where), a WRITE of the value into each replica (replica-io.ts), PutEnd;
 * PutRevoke if a write failed (docs/store-wire.md §4.3). Upsert the same with
 * its own calls.
 */
import { ErrorCode, teError } from '../errors.js';
import { checkConfig, checkKey, checkLength, keyArg, viewOf } from './args.js';
import type { CallRecorder } from './calls.js';
import type { Lifecycle } from './lifecycle.js';
import { Master, ReplicaType, StoreErrorCode } from './master-protocol.js';
import type { ReplicateConfig } from './replicate-config.js';
import { StoreError, storeError } from './store-errors.js';

/** put: a key that exists is left as it is; upsert: it is replaced (Mooncake's two write calls). */
export type WriteMode = 'put' | 'upsert';

export class Writes {
  constructor(
    private readonly life: Lifecycle,
    private readonly calls: CallRecorder,
  ) {}

  /** put / upsert: 0, or a negative code. */
  async writeOne(mode: WriteMode, key: string, value: Uint8Array | ArrayBuffer | string, config: ReplicateConfig): Promise<number> {
    keyArg(mode, key);
    try {
      const bytes = viewOf(value, `${mode}(): value`);
      await this.life.ready().io.staged(bytes.length, async (addr, view) => {
        view.set(bytes);
        await this.writeRange(mode, key, addr, bytes.length, config);
      });
      return StoreErrorCode.OK;
    } catch (e) {
      return this.calls.fail(mode, e);
    }
  }

  /** putFrom / upsertFrom: 0, or a negative code. */
  async writeOneFrom(mode: WriteMode, key: string, bufferAddr: number, size: number, config: ReplicateConfig): Promise<number> {
    const m = `${mode}From`;
    keyArg(m, key);
    try {
      this.life.ready().engine.localView(bufferAddr, size); // inside registered memory
      await this.writeRange(mode, key, bufferAddr, size, config);
      return StoreErrorCode.OK;
    } catch (e) {
      return this.calls.fail(m, e);
    }
  }

  /** putBatch / upsertBatch: 0 when all succeeded, else the first failure's code. */
  async writeBatch(mode: WriteMode, keys: string[], values: Array<Uint8Array | ArrayBuffer | string>, config: ReplicateConfig): Promise<number> {
    const m = `${mode}Batch`;
    try {
      if (!Array.isArray(keys) || !Array.isArray(values) || keys.length !== values.length) {
        throw teError(ErrorCode.INVALID_ARGUMENT, 'keys and values must be arrays of the same length');
      }
      const views = values.map((v, i) => viewOf(v, `${m}(): values[${i}]`));
      const total = views.reduce((sum, v) => sum + v.length, 0);
      let results: number[] = [];
      await this.life.ready().io.staged(total, async (addr, view) => {
        const addrs: number[] = [];
        let at = 0;
        for (const v of views) {
          view.set(v, at);
          addrs.push(addr + at);
          at += v.length;
        }
        results = await this.writeRanges(mode, keys, addrs, views.map((v) => v.length), config);
      });
      return results.find((r) => r !== StoreErrorCode.OK) ?? StoreErrorCode.OK;
    } catch (e) {
      return this.calls.fail(m, e);
    }
  }

  /** batchPutFrom / batchUpsertFrom: a code per key. */
  async writeBatchFrom(mode: WriteMode, keys: string[], bufferAddrs: number[], sizes: number[], config: ReplicateConfig): Promise<number[]> {
    const m = mode === 'put' ? 'batchPutFrom' : 'batchUpsertFrom';
    try {
      if (!Array.isArray(keys) || !Array.isArray(bufferAddrs) || !Array.isArray(sizes) || keys.length !== bufferAddrs.length || keys.length !== sizes.length) {
        throw teError(ErrorCode.INVALID_ARGUMENT, 'keys, bufferAddrs and sizes must be arrays of the same length');
      }
      const { engine } = this.life.ready();
      for (let i = 0; i < keys.length; i++) engine.localView(bufferAddrs[i]!, sizes[i]!);
      return await this.writeRanges(mode, keys, bufferAddrs, sizes, config);
    } catch (e) {
      const code = this.calls.fail(m, e);
      return Array.isArray(keys) ? keys.map(() => code) : [];
    }
  }

  /** (Batch)PutStart or (Batch)UpsertStart, one batch of WRITEs for every key that started, the End or Revoke. */
  private async writeRanges(mode: WriteMode, keys: string[], addrs: number[], sizes: number[], config: ReplicateConfig): Promise<number[]> {
    const { membership } = this.life.ready();
    const id = membership.clientId;
    keys.forEach((k) => checkKey(k));
    sizes.forEach((n) => checkLength(n));
    checkConfig(config);
    const start = mode === 'put' ? Master.BatchPutStart : Master.BatchUpsertStart;
    const started = await this.life.master(start, [id, keys, sizes.map(BigInt), config.toWire(), this.life.tenant]);
    if (started.length !== keys.length) throw new StoreError(StoreErrorCode.INTERNAL_ERROR, `${start.name} answered ${started.length} results for ${keys.length} keys`);
    // A put of a key that exists is a success that writes nothing (Mooncake's put).
    const results = started.map((r) => (r.ok || (mode === 'put' && r.error === StoreErrorCode.OBJECT_ALREADY_EXISTS) ? StoreErrorCode.OK : r.error));
    const writes: number[] = [];
    await Promise.all(
      started.map((r, i) => {
        if (!r.ok) return undefined;
        writes.push(i);
        return this.life.ready().io.write(addrs[i]!, sizes[i]!, r.value, keys[i]!).catch((e: unknown) => {
          results[i] = e instanceof StoreError ? e.storeCode : StoreErrorCode.TRANSFER_FAIL;
        });
      }),
    );
    const ended = writes.filter((i) => results[i] === StoreErrorCode.OK);
    const revoked = writes.filter((i) => results[i] !== StoreErrorCode.OK);
    if (ended.length > 0) {
      const metas = ended.map((i) => ({ key: keys[i]!, objectChecksum: null }));
      const r =
        mode === 'put'
          ? await this.life.master(Master.BatchPutEnd, [id, metas, ReplicaType.ALL, this.life.tenant])
          : await this.life.master(Master.BatchUpsertEnd, [id, metas, this.life.tenant]);
      r.forEach((x, j) => {
        if (!x.ok) results[ended[j]!] = x.error;
      });
    }
    if (revoked.length > 0) {
      const gone = revoked.map((i) => keys[i]!);
      const revoke =
        mode === 'put'
          ? this.life.master(Master.BatchPutRevoke, [id, gone, ReplicaType.ALL, this.life.tenant])
          : this.life.master(Master.BatchUpsertRevoke, [id, gone, this.life.tenant]);
      await revoke.catch(() => undefined); // the failure reported is the transfer's
    }
    return results;
  }

  /** PutStart or UpsertStart, the WRITEs, the End (or Revoke). */
  private async writeRange(mode: WriteMode, key: string, addr: number, size: number, config: ReplicateConfig): Promise<void> {
    const { membership } = this.life.ready();
    const id = membership.clientId;
    checkKey(key);
    checkLength(size);
    checkConfig(config);
    const [start, end, revoke] = mode === 'put' ? [Master.PutStart, Master.PutEnd, Master.PutRevoke] : [Master.UpsertStart, Master.UpsertEnd, Master.UpsertRevoke];
    const r = await this.life.master(start, [id, key, BigInt(size), config.toWire(), this.life.tenant]);
    if (!r.ok) {
      if (mode === 'put' && r.error === StoreErrorCode.OBJECT_ALREADY_EXISTS) return; // Mooncake's put: the object is there already
      throw storeError(r.error, `${start.name} of "${key}" (${size} bytes)`);
    }
    try {
      await this.life.ready().io.write(addr, size, r.value, key);
    } catch (e) {
      await this.life.master(revoke, [id, key, ReplicaType.ALL, this.life.tenant]).catch(() => undefined);
      throw e;
    }
    const done = await this.life.master(end, [id, { key, objectChecksum: null }, ReplicaType.ALL, this.life.tenant]);
    if (!done.ok) throw storeError(done.error, `${end.name} of "${key}"`);
  }
}
