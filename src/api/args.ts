/**
 * Argument checks for the high-level API. A wrong argument count or type is a
 * programmer error: TypeError, as Python raises for the seed's binding. A
 * value of the right type but out of range is the caller's data: a
 * TransferEngineError that the facade turns into a negative return code.
 */
import { teError, ErrorCode } from '../errors.js';

const U64_MAX = (1n << 64n) - 1n;

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

export function arity(method: string, given: number, min: number, max: number): void {
  if (given >= min && given <= max) return;
  const want = min === max ? `${min}` : `${min} to ${max}`;
  throw new TypeError(`${method}() takes ${want} argument${max === 1 ? '' : 's'} (${given} given)`);
}

export function str(method: string, name: string, v: unknown): string {
  if (typeof v !== 'string') throw new TypeError(`${method}(): ${name} must be a string, got ${typeName(v)}`);
  return v;
}

/** An integer-valued argument: a number or a bigint (range checked later, as data). */
export function intLike(method: string, name: string, v: unknown): number | bigint {
  if (typeof v !== 'number' && typeof v !== 'bigint') {
    throw new TypeError(`${method}(): ${name} must be a number or bigint, got ${typeName(v)}`);
  }
  return v;
}

export function list(method: string, name: string, v: unknown): unknown[] {
  if (!Array.isArray(v)) throw new TypeError(`${method}(): ${name} must be an array, got ${typeName(v)}`);
  return v;
}

export function intList(method: string, name: string, v: unknown): Array<number | bigint> {
  return list(method, name, v).map((x, i) => intLike(method, `${name}[${i}]`, x));
}

/** Bytes to copy from: any ArrayBufferView or ArrayBuffer (Python's bytes). */
export function bytesArg(method: string, name: string, v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  throw new TypeError(`${method}(): ${name} must be a Uint8Array, Buffer or ArrayBuffer, got ${typeName(v)}`);
}

// ---------------------------------------------------------------- values

/** A length: a positive safe integer. */
export function toLength(v: number | bigint, what = 'length'): number {
  const n = typeof v === 'bigint' ? (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : NaN) : v;
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `${what} ${String(v)} must be a positive integer`);
  }
  return n;
}

/** A local address: a positive safe integer (our synthetic addresses are all below 2^53). */
export function toLocalAddress(v: number | bigint, what = 'address'): number {
  if (typeof v === 'bigint') {
    if (v > 0n && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
    if (v > 0n && v <= U64_MAX) throw teError(ErrorCode.ADDRESS_NOT_REGISTERED, `${what} 0x${v.toString(16)} is not in registered memory`);
    throw teError(ErrorCode.INVALID_ARGUMENT, `${what} ${v} is not a valid address`);
  }
  if (!Number.isSafeInteger(v) || v <= 0) throw teError(ErrorCode.INVALID_ARGUMENT, `${what} ${String(v)} is not a valid address`);
  return v;
}

/** A peer address: any 64-bit value (a Mooncake peer's addresses are its real pointers). */
export function toRemoteAddress(v: number | bigint, what = 'peer buffer address'): bigint {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw teError(ErrorCode.INVALID_ARGUMENT, `${what} ${String(v)} is not a valid address`);
    return BigInt(v);
  }
  if (v < 0n || v > U64_MAX) throw teError(ErrorCode.INVALID_ARGUMENT, `${what} ${v} is outside the 64-bit address space`);
  return v;
}

/** What registerMemory and friends accept as memory: an address, or the memory itself. */
export type MemoryRef = number | bigint | ArrayBufferView | ArrayBuffer | SharedArrayBuffer;

export type MemoryArg =
  | { kind: 'address'; value: number | bigint }
  | { kind: 'bytes'; buffer: ArrayBufferLike; start: number; byteLength: number };

export function memoryArg(method: string, name: string, v: unknown): MemoryArg {
  if (typeof v === 'number' || typeof v === 'bigint') return { kind: 'address', value: v };
  if (ArrayBuffer.isView(v)) return { kind: 'bytes', buffer: v.buffer, start: v.byteOffset, byteLength: v.byteLength };
  if (v instanceof ArrayBuffer || v instanceof SharedArrayBuffer) return { kind: 'bytes', buffer: v, start: 0, byteLength: v.byteLength };
  throw new TypeError(`${method}(): ${name} must be an address (number or bigint) or a Uint8Array, Buffer, TypedArray or ArrayBuffer, got ${typeName(v)}`);
}
