/**
 * Argument checks of the store's calls. A wrong type is a programmer error: a
 * TypeError, thrown (or, from an async call, rejected with), as Python raises
 * for the binding. A value of the right type that cannot work (an empty key, a
 * zero length) is the caller's data: a StoreError whose code the call returns.
 */
import { StoreErrorCode } from './master-protocol.js';
import { ReplicateConfig } from './replicate-config.js';
import { StoreError } from './store-errors.js';

/** Longest key accepted (UTF-8 bytes): ours, the master has none. */
export const MAX_KEY_BYTES = 64 * 1024;

/** Bytes of a value as a view (no copy). */
export function viewOf(value: unknown, what: string): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) return new Uint8Array(value);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  throw new TypeError(`${what} must be bytes (a Buffer, TypedArray, ArrayBuffer) or a string`);
}

export function keyArg(method: string, key: unknown): string {
  if (typeof key !== 'string') throw new TypeError(`${method}(): key must be a string, got ${typeof key}`);
  return key;
}

export function checkKey(key: string): void {
  if (key.length === 0) throw new StoreError(StoreErrorCode.INVALID_KEY, 'the key is empty');
  // The master sets no limit; a key this long is a bug in the caller, and every call would carry it.
  const n = Buffer.byteLength(key);
  if (n > MAX_KEY_BYTES) throw new StoreError(StoreErrorCode.INVALID_KEY, `the key is ${n} bytes; keys are at most ${MAX_KEY_BYTES}`);
}

export function checkLength(n: number): void {
  if (!Number.isSafeInteger(n) || n <= 0) throw new StoreError(StoreErrorCode.INVALID_PARAMS, `a value of ${String(n)} bytes: values are 1 byte or more`);
}

export function checkConfig(config: ReplicateConfig): void {
  if (!(config instanceof ReplicateConfig)) throw new TypeError('config must be a ReplicateConfig');
  // As the wheel's client: this placement needs the host id of a same-node allocator this client does not run.
  if (config.preferAllocInSameNode) throw new StoreError(StoreErrorCode.INVALID_PARAMS, 'preferAllocInSameNode is not supported by this client (as by the Python client over TCP)');
}
