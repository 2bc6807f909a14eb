/**
 * get and its forms (into registered memory, batches): GetReplicaList (which
 * grants a read lease), then a READ from a complete replica within the lease
 * (replica-io.ts; docs/store-wire.md §4.3).
 */
import { ErrorCode, teError } from '../errors.js';
import { checkKey, keyArg } from './args.js';
import type { CallRecorder } from './calls.js';
import type { Lifecycle } from './lifecycle.js';
import { Master, StoreErrorCode, type GetReplicaListResponse } from './master-protocol.js';
import { objectSize } from './replica-io.js';
import { StoreError, storeError } from './store-errors.js';

export class Reads {
  constructor(
    private readonly life: Lifecycle,
    private readonly calls: CallRecorder,
  ) {}

  /** The value under `key`, or an empty Buffer on failure (getLastError() says why). */
  async get(key: string): Promise<Buffer> {
    const m = 'get';
    keyArg(m, key);
    try {
      return await this.getOne(key);
    } catch (e) {
      this.calls.fail(m, e);
      return Buffer.alloc(0);
    }
  }

  private async getOne(key: string): Promise<Buffer> {
    checkKey(key);
    const t0 = performance.now();
    const r = await this.life.master(Master.GetReplicaList, [key, this.life.tenant]);
    if (!r.ok) throw storeError(r.error, `GetReplicaList of "${key}"`);
    const size = objectSize(r.value, key);
    let out = Buffer.alloc(0);
    await this.life.ready().io.staged(size, async (addr, view) => {
      await this.life.ready().io.read(addr, size, r.value, key, t0);
      out = Buffer.from(view.subarray(0, size));
    });
    return out;
  }

  /** Read the object into registered memory at `bufferAddr` (at most `size` bytes): the bytes read, or a negative code. */
  async getInto(key: string, bufferAddr: number, size: number): Promise<number> {
    const m = 'getInto';
    keyArg(m, key);
    try {
      checkKey(key);
      this.life.ready().engine.localView(bufferAddr, size);
      const t0 = performance.now();
      const r = await this.life.master(Master.GetReplicaList, [key, this.life.tenant]);
      if (!r.ok) throw storeError(r.error, `GetReplicaList of "${key}"`);
      const n = objectSize(r.value, key);
      if (n > size) throw new StoreError(StoreErrorCode.INVALID_PARAMS, `"${key}" is ${n} bytes; the buffer holds ${size}`);
      await this.life.ready().io.read(bufferAddr, n, r.value, key, t0);
      return n;
    } catch (e) {
      return this.calls.fail(m, e);
    }
  }

  /** Several gets: a Buffer per key (empty where it failed). */
  async getBatch(keys: string[]): Promise<Buffer[]> {
    const m = 'getBatch';
    try {
      if (!Array.isArray(keys)) throw teError(ErrorCode.INVALID_ARGUMENT, 'keys must be an array');
      keys.forEach((k) => checkKey(k));
      const t0 = performance.now();
      const lists = await this.life.master(Master.BatchGetReplicaList, [keys, this.life.tenant]);
      const sizes = lists.map((l, i) => (l.ok ? sizeOrNone(l.value, keys[i]!) : -1));
      const total = sizes.reduce((s, n) => s + Math.max(0, n), 0);
      const out = keys.map(() => Buffer.alloc(0));
      await this.life.ready().io.staged(Math.max(1, total), async (addr, view) => {
        let at = 0;
        const offsets = sizes.map((n) => {
          const o = at;
          at += Math.max(0, n);
          return o;
        });
        await Promise.all(
          lists.map(async (l, i) => {
            if (!l.ok || sizes[i]! < 0) return;
            try {
              await this.life.ready().io.read(addr + offsets[i]!, sizes[i]!, l.value, keys[i]!, t0);
              out[i] = Buffer.from(view.subarray(offsets[i]!, offsets[i]! + sizes[i]!));
            } catch (e) {
              this.calls.fail(m, e);
            }
          }),
        );
      });
      return out;
    } catch (e) {
      this.calls.fail(m, e);
      return Array.isArray(keys) ? keys.map(() => Buffer.alloc(0)) : [];
    }
  }

  /** Several getInto: the bytes read, or a negative code, per key. */
  async batchGetInto(keys: string[], bufferAddrs: number[], sizes: number[]): Promise<number[]> {
    const m = 'batchGetInto';
    try {
      if (!Array.isArray(keys) || !Array.isArray(bufferAddrs) || !Array.isArray(sizes) || keys.length !== bufferAddrs.length || keys.length !== sizes.length) {
        throw teError(ErrorCode.INVALID_ARGUMENT, 'keys, bufferAddrs and sizes must be arrays of the same length');
      }
      const { engine } = this.life.ready();
      keys.forEach((k) => checkKey(k));
      for (let i = 0; i < keys.length; i++) engine.localView(bufferAddrs[i]!, sizes[i]!);
      const t0 = performance.now();
      const lists = await this.life.master(Master.BatchGetReplicaList, [keys, this.life.tenant]);
      return await Promise.all(
        lists.map(async (l, i) => {
          try {
            if (!l.ok) throw storeError(l.error, `GetReplicaList of "${keys[i]!}"`);
            const n = objectSize(l.value, keys[i]!);
            if (n > sizes[i]!) throw new StoreError(StoreErrorCode.INVALID_PARAMS, `"${keys[i]!}" is ${n} bytes; its buffer holds ${sizes[i]!}`);
            await this.life.ready().io.read(bufferAddrs[i]!, n, l.value, keys[i]!, t0);
            return n;
          } catch (e) {
            return this.calls.fail(m, e);
          }
        }),
      );
    } catch (e) {
      const code = this.calls.fail(m, e);
      return Array.isArray(keys) ? keys.map(() => code) : [];
    }
  }
}

/** The object's size, or -1 when it has no memory replica (a batch's other keys go on). */
function sizeOrNone(list: GetReplicaListResponse, key: string): number {
  try {
    return objectSize(list, key);
  } catch {
    return -1;
  }
}
