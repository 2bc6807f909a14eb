/**
 * The calls the master answers alone, with no transfer: whether a key exists,
 * an object's size, and removal (by key, by regex, all).
 */
import { ErrorCode, teError } from '../errors.js';
import { checkKey, keyArg } from './args.js';
import type { CallRecorder } from './calls.js';
import type { Lifecycle } from './lifecycle.js';
import { Master, StoreErrorCode } from './master-protocol.js';
import { objectSize } from './replica-io.js';
import { storeError } from './store-errors.js';

export class Queries {
  constructor(
    private readonly life: Lifecycle,
    private readonly calls: CallRecorder,
  ) {}

  /** 1 if `key` exists, 0 if not, or a negative code. */
  async isExist(key: string): Promise<number> {
    const m = 'isExist';
    keyArg(m, key);
    try {
      checkKey(key);
      const r = await this.life.master(Master.ExistKey, [key, this.life.tenant]);
      if (!r.ok) throw storeError(r.error, `ExistKey of "${key}"`);
      return r.value ? 1 : 0;
    } catch (e) {
      return this.calls.fail(m, e);
    }
  }

  /** isExist per key. */
  async batchIsExist(keys: string[]): Promise<number[]> {
    const m = 'batchIsExist';
    try {
      if (!Array.isArray(keys)) throw teError(ErrorCode.INVALID_ARGUMENT, 'keys must be an array');
      keys.forEach((k) => checkKey(k));
      const r = await this.life.master(Master.BatchExistKey, [keys, this.life.tenant]);
      return r.map((x) => (x.ok ? (x.value ? 1 : 0) : x.error));
    } catch (e) {
      const code = this.calls.fail(m, e);
      return Array.isArray(keys) ? keys.map(() => code) : [];
    }
  }

  /** The size of the object under `key`, or a negative code. (It takes a read lease, as Mooncake's does.) */
  async getSize(key: string): Promise<number> {
    const m = 'getSize';
    keyArg(m, key);
    try {
      checkKey(key);
      const r = await this.life.master(Master.GetReplicaList, [key, this.life.tenant]);
      if (!r.ok) throw storeError(r.error, `GetReplicaList of "${key}"`);
      return objectSize(r.value, key);
    } catch (e) {
      return this.calls.fail(m, e);
    }
  }

  /** Remove an object: 0 or a negative code (OBJECT_HAS_LEASE while a read lease runs, unless `force`). */
  async remove(key: string, force: boolean): Promise<number> {
    const m = 'remove';
    keyArg(m, key);
    try {
      checkKey(key);
      const r = await this.life.master(Master.Remove, [key, force === true, this.life.tenant]);
      if (!r.ok) throw storeError(r.error, `Remove of "${key}"`);
      return StoreErrorCode.OK;
    } catch (e) {
      return this.calls.fail(m, e);
    }
  }

  /** remove() per key: 0 or a negative code each. */
  async batchRemove(keys: string[], force: boolean): Promise<number[]> {
    const m = 'batchRemove';
    try {
      if (!Array.isArray(keys)) throw teError(ErrorCode.INVALID_ARGUMENT, 'keys must be an array');
      keys.forEach((k) => checkKey(k));
      const r = await this.life.master(Master.BatchRemove, [keys, force === true, this.life.tenant]);
      return r.map((x) => (x.ok ? StoreErrorCode.OK : x.error));
    } catch (e) {
      const code = this.calls.fail(m, e);
      return Array.isArray(keys) ? keys.map(() => code) : [];
    }
  }

  /** Remove the objects whose keys match `regex` (the master's ECMAScript-like regex): how many, or a negative code. */
  async removeByRegex(regex: string, force: boolean): Promise<number> {
    const m = 'removeByRegex';
    try {
      if (typeof regex !== 'string') throw teError(ErrorCode.INVALID_ARGUMENT, 'regex must be a string');
      const r = await this.life.master(Master.RemoveByRegex, [regex, force === true, this.life.tenant]);
      if (!r.ok) throw storeError(r.error, `RemoveByRegex of /${regex}/`);
      return Number(r.value);
    } catch (e) {
      return this.calls.fail(m, e);
    }
  }

  /** Remove every object (of this tenant): how many, or a negative code. */
  async removeAll(force: boolean): Promise<number> {
    const m = 'removeAll';
    try {
      return Number(await this.life.master(Master.RemoveAll, [force === true, this.life.tenant]));
    } catch (e) {
      return this.calls.fail(m, e);
    }
  }
}
