/**
 * Loader and types for the te_native addon (src/native/native.c, built at
 * install time by src/native/build.mjs): the few things Node cannot do
 * (shared-memory and file mappings with a SIGBUS guard, aligned buffers,
 * flock, busy polling of the event loop). The addon is optional: when it is
 * missing (no compiler at install, not Linux) loadNative() throws
 * TE_NOT_SUPPORTED and the engine keeps working over TCP.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { teError, ErrorCode, type TransferEngineError } from '../errors.js';
import { envVar } from '../env.js';

declare const handleBrand: unique symbol;
/** Opaque native mapping handle (a tagged napi external). */
export interface NativeHandle {
  readonly [handleBrand]: 'te_native mapping';
}

export interface OwnedMapping {
  /** Holds the owner's shared flock; closing it tells the reaper the owner is gone. */
  fd: number;
  /** External ArrayBuffer over the MAP_SHARED mapping. */
  buffer: ArrayBuffer;
  handle: NativeHandle;
}

export interface NativeAddon {
  createShm(path: string, size: number, populate: boolean): OwnedMapping;
  releaseOwned(handle: NativeHandle, buffer: ArrayBuffer): void;
  openPeer(path: string, expectedSize: number, writable: boolean): NativeHandle;
  peerCopy(handle: NativeHandle, offset: number, view: Uint8Array, write: boolean, flags: number): void;
  closePeer(handle: NativeHandle): void;
  tryLockExclusive(path: string): number;
  allocAligned(size: number, alignment: number): ArrayBuffer;
  addressModulo(view: ArrayBuffer | ArrayBufferView, modulus: number): number;
  sigbusGuardInstalled(): boolean;
  /** An existing regular file, flock(LOCK_EX), mapped MAP_SHARED read-write (a store file segment). */
  mapFile(path: string): OwnedMapping & { size: number };
  /** msync(MS_SYNC) of an owned mapping; a no-op once released. */
  syncMapping(handle: NativeHandle): void;
  /**
   * Spin (yielding the CPU between checks) until this thread's event loop has
   * events ready or `us` microseconds pass; true if it has. For busy polling.
   */
  pollWait(us: number): boolean;
}

/** peerCopy flag, tests only: skip the fstat pre-check so the SIGBUS guard itself is exercised. */
export const COPY_SKIP_STAT = 1;

const ADDON_CANDIDATES = [
  // dist/src/native/addon.js -> <root>/build/Release
  '../../../build/Release/te_native.node',
  // src/native/addon.ts run from source
  '../../build/Release/te_native.node',
];

let loaded: NativeAddon | undefined;
let loadError: TransferEngineError | undefined;

function addonPath(): string | undefined {
  const override = envVar('TE_SHM_ADDON');
  if (override !== undefined) return override;
  for (const rel of ADDON_CANDIDATES) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** The addon, loaded once per module instance (so once per worker thread). */
export function loadNative(): NativeAddon {
  if (loaded) return loaded;
  if (loadError) throw loadError;
  if (process.platform !== 'linux') {
    loadError = teError(ErrorCode.NOT_SUPPORTED, `shared memory needs Linux (/dev/shm); this is ${process.platform}`);
    throw loadError;
  }
  const path = addonPath();
  if (path === undefined) {
    loadError = teError(
      ErrorCode.NOT_SUPPORTED,
      'the native addon (build/Release/te_native.node) is not built; run `npm rebuild` or `node src/native/build.mjs` with a C compiler available',
    );
    throw loadError;
  }
  try {
    loaded = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (e) {
    loadError = teError(ErrorCode.NOT_SUPPORTED, `the native addon at ${path} cannot be loaded: ${(e as Error).message}`, e);
    throw loadError;
  }
  return loaded;
}

export function nativeAvailable(): boolean {
  try {
    loadNative();
    return true;
  } catch {
    return false;
  }
}

interface NativeError extends Error {
  code?: string;
  errno?: number;
  syscall?: string;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));

/** Errno name of a native error (EEXIST, ENOSPC, ...), or undefined. */
export function nativeErrno(e: unknown): string | undefined {
  const n = (e as NativeError | null)?.errno;
  return typeof n === 'number' && n !== 0 ? ERRNO_NAMES.get(n) : undefined;
}

/**
 * A native error as a TransferEngineError. `osCode` is the code for plain OS
 * failures, which depend on the side: the peer's file (PEER_UNREACHABLE) or
 * our own allocation (NOT_SUPPORTED).
 */
export function fromNative(e: unknown, context: string, osCode: ErrorCode): TransferEngineError {
  const ne = e as NativeError;
  const msg = `${context}: ${ne?.message ?? String(e)}`;
  switch (ne?.code) {
    case 'ERR_TE_SHM_ARGS':
      return teError(ErrorCode.INVALID_ARGUMENT, msg, e);
    case 'ERR_TE_SHM_RANGE':
      return teError(ErrorCode.ADDRESS_REJECTED, msg, e);
    case 'ERR_TE_SHM_SIZE':
    case 'ERR_TE_SHM_FOREIGN':
      return teError(ErrorCode.MALFORMED, msg, e);
    case 'ERR_TE_SHM_MISSING':
    case 'ERR_TE_SHM_TRUNCATED':
      return teError(ErrorCode.PEER_UNREACHABLE, msg, e);
    case 'ERR_TE_SHM_CLOSED':
      return teError(ErrorCode.CLOSED, msg, e);
    default: {
      const name = nativeErrno(e);
      return teError(osCode, name ? `${msg} [${name}]` : msg, e);
    }
  }
}
