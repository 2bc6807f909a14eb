/**
 * Argument checks for the high-level API. A wrong argument count or type is a
 * programmer error: TypeError, as Python raises for Mooncake's binding. A
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

/**
 * The argument count check: `args` is the method's own `arguments` object, so
 * a number cannot be passed in its place (a literal count would pass the check
 * whatever the caller gave).
 */
export function arity(method: string, args: IArguments, min: number, max: number): void {
  const given = args.length;
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

// ------------------------------------------------------ transfer shapes

/** The arguments of the single-range transfer calls (transferSync*, transferSubmit*), after their count. */
export function singleTransferArgs(m: string, target: unknown, buffer: unknown, peer: unknown, length: unknown, hint: unknown): void {
  str(m, 'targetHostname', target);
  intLike(m, 'buffer', buffer);
  intLike(m, 'peerBufferAddress', peer);
  intLike(m, 'length', length);
  str(m, 'transportHint', hint);
}

export interface BatchLists {
  buffers: Array<number | bigint>;
  peers: Array<number | bigint>;
  lengths: Array<number | bigint>;
}

/** The arguments of the batch transfer calls (batchTransfer*), after their count: the three lists, checked element by element. */
export function batchTransferArgs(m: string, target: unknown, buffers: unknown, peers: unknown, lengths: unknown, hint: unknown): BatchLists {
  str(m, 'targetHostname', target);
  const r = { buffers: intList(m, 'buffers', buffers), peers: intList(m, 'peerBufferAddresses', peers), lengths: intList(m, 'lengths', lengths) };
  str(m, 'transportHint', hint);
  return r;
}

/** A number outside the enum is data (ERR_INVALID_ARGUMENT, checked by the core, like a bad length); a non-number is a TypeError. */
export function opcodeArg(m: string, opcode: unknown): void {
  if (typeof opcode !== 'number') throw new TypeError(`${m}(): opcode must be a TransferOpcode (number), got ${typeof opcode}`);
}

/** A TransferNotify (any { name: string, msg: string }), or null / undefined for none. */
export function notifyArg(m: string, notify: unknown): void {
  if (notify === null || notify === undefined) return;
  const n = notify as { name?: unknown; msg?: unknown };
  if (typeof notify !== 'object' || typeof n.name !== 'string' || typeof n.msg !== 'string') {
    throw new TypeError(`${m}(): notify must be a TransferNotify { name: string, msg: string } or null`);
  }
}

/**
 * The options form of the transfer calls, sync and async (a trailing argument
 * after transportHint). For the async calls (transferSubmit*, batchTransferAsync*)
 * they apply to the batch: its status (transferCheckStatus, getBatchTransferStatus)
 * is then ERR_CANCELED or ERR_TIMEOUT.
 */
export interface SyncOptions {
  /** Its abort cancels the transfer: the call (async: the batch) ends ERR_CANCELED. Already aborted: nothing is submitted. */
  signal?: AbortSignal;
  /** Replaces the deadline (MC_TRANSFER_TIMEOUT + 1 ns/byte; async: from the submission): on expiry the transfer is canceled, ERR_TIMEOUT. */
  timeoutMs?: number;
}

export function syncOptionsArg(m: string, v: unknown): SyncOptions {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new TypeError(`${m}(): options must be an object ({ signal, timeoutMs }), got ${typeName(v)}`);
  const { signal, timeoutMs } = v as Record<string, unknown>;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError(`${m}(): options.signal must be an AbortSignal, got ${typeName(signal)}`);
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0)) {
    throw new TypeError(`${m}(): options.timeoutMs must be a positive number of milliseconds, got ${typeof timeoutMs === 'number' ? String(timeoutMs) : typeName(timeoutMs)}`);
  }
  return { ...(signal ? { signal } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
}
