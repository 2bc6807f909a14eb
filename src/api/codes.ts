/**
 * Return codes of the high-level API (the contract of Mooncake's Python
 * binding, mooncake.engine.TransferEngine: 0 on success, a negative value on
 * failure). Each failure also leaves a
 * CallError with the detail, read with TransferEngine.getLastError().
 *
 * -1 and -2 mean what transferCheckStatus's -1 (failed) and -2 (timed out)
 * mean, so every method speaks the same language. -3 and -7 keep the values of
 * Mooncake's error.h (ERR_ADDRESS_NOT_REGISTERED, ERR_ADDRESS_OVERLAPPED), as
 * do -102/-103 (socket, malformed), -200 (metadata), -302 (memory) and -303
 * (not implemented).
 */
import { ErrorCode, TransferEngineError } from '../errors.js';

/** Success. */
export const OK = 0;
/** The operation failed: a transfer ran and did not complete (the peer refused the range, the connection broke, the engine closed). */
export const ERR_FAILED = -1;
/** Not done in time: MC_TRANSFER_TIMEOUT seconds + 1 ns per byte for the sync calls, or no progress for MC_TRANSFER_TIMEOUT. */
export const ERR_TIMEOUT = -2;
/** A local range is not inside memory registered with this engine (never registered, unregistered, or a freed managed buffer). */
export const ERR_ADDRESS_NOT_REGISTERED = -3;
/** A value of the right type is out of range: a negative or non-integer length, lists of different lengths, an unknown opcode, an empty name. */
export const ERR_INVALID_ARGUMENT = -4;
/** Called before initialize() succeeded. */
export const ERR_NOT_INITIALIZED = -5;
/** Called after close(). */
export const ERR_CLOSED = -6;
/** The memory is already registered (the same buffer, or a view overlapping a registered one). */
export const ERR_ADDRESS_OVERLAPPED = -7;
/** initialize() or initializeExt() on an engine that is already initialized (or initializing). */
export const ERR_ALREADY_INITIALIZED = -8;
/** Unknown batch id: never returned by this engine, or already freed by a final status. */
export const ERR_INVALID_BATCH = -9;
/** freeManagedBuffer(): not an allocated managed buffer (double free, foreign address) or not the length it was allocated with. */
export const ERR_INVALID_MANAGED_BUFFER = -10;
/** The memory has transfers in flight: unregister or free it after they finish. */
export const ERR_REGION_BUSY = -11;
/** An MC_* environment variable holds a malformed value (initialize). The detail names the variable. */
export const ERR_BAD_ENV = -12;
/** The transfer was canceled (an aborted signal, or the options' timeout) before it ended. */
export const ERR_CANCELED = -13;
/** The target cannot be reached: connection refused or timed out, host name not resolvable, peer gone. */
export const ERR_PEER_UNREACHABLE = -102;
/** The peer answered with bytes that do not follow the protocol (malformed frame or descriptor). */
export const ERR_PROTOCOL = -103;
/** The data was transferred, but the peer did not accept the Notify message sent after it. */
export const ERR_NOTIFY_FAILED = -104;
/** The RPC or data port could not be bound (in use, or no free port in [MC_MIN_RPC_PORT, MC_MAX_RPC_PORT]). */
export const ERR_PORT_IN_USE = -105;
/** The segment cannot be opened: its metadata is missing, or the metadata service failed. */
export const ERR_METADATA = -200;
/** A managed buffer could not be allocated (the process is out of memory). */
export const ERR_OUT_OF_MEMORY = -302;
/** Needs something this host does not have: protocol "rdma" and other hardware transports, GPU memory, a peer without TCP, a metadata backend not available. */
export const ERR_NOT_SUPPORTED = -303;

/** Every code by name, for logs and for code that wants to branch on names. */
export const ReturnCode = {
  OK,
  ERR_FAILED,
  ERR_TIMEOUT,
  ERR_ADDRESS_NOT_REGISTERED,
  ERR_INVALID_ARGUMENT,
  ERR_NOT_INITIALIZED,
  ERR_CLOSED,
  ERR_ADDRESS_OVERLAPPED,
  ERR_ALREADY_INITIALIZED,
  ERR_INVALID_BATCH,
  ERR_INVALID_MANAGED_BUFFER,
  ERR_REGION_BUSY,
  ERR_BAD_ENV,
  ERR_CANCELED,
  ERR_PEER_UNREACHABLE,
  ERR_PROTOCOL,
  ERR_NOTIFY_FAILED,
  ERR_PORT_IN_USE,
  ERR_METADATA,
  ERR_OUT_OF_MEMORY,
  ERR_NOT_SUPPORTED,
} as const;

export type ReturnCodeName = keyof typeof ReturnCode;

/** The name of a return code ('ERR_TIMEOUT'), or undefined for a value that is not one. */
export function returnCodeName(code: number): ReturnCodeName | undefined {
  for (const [k, v] of Object.entries(ReturnCode)) if (v === code) return k as ReturnCodeName;
  return undefined;
}

/** A value of ReturnCode. */
export type ReturnCodeValue = (typeof ReturnCode)[ReturnCodeName];

/**
 * Core error code -> return code. `satisfies Record<ErrorCode, ...>` makes it
 * exhaustive: a code added to src/errors.ts does not compile until it is given
 * a return code here, and each value must be one of ReturnCode's.
 */
export const RETURN_CODE_OF = {
  [ErrorCode.INVALID_ARGUMENT]: ERR_INVALID_ARGUMENT,
  [ErrorCode.ADDRESS_NOT_REGISTERED]: ERR_ADDRESS_NOT_REGISTERED,
  // The peer refused the range: the transfer ran and failed (the Python binding's -1).
  [ErrorCode.ADDRESS_REJECTED]: ERR_FAILED,
  [ErrorCode.ADDRESS_OVERLAPPED]: ERR_ADDRESS_OVERLAPPED,
  // Memory that cannot be used any more is, for the caller, memory that is not registered.
  [ErrorCode.MEMORY_DETACHED]: ERR_ADDRESS_NOT_REGISTERED,
  [ErrorCode.OUT_OF_MEMORY]: ERR_OUT_OF_MEMORY,
  [ErrorCode.REGION_BUSY]: ERR_REGION_BUSY,
  [ErrorCode.INVALID_BATCH]: ERR_INVALID_BATCH,
  [ErrorCode.BATCH_FULL]: ERR_INVALID_ARGUMENT,
  [ErrorCode.BATCH_BUSY]: ERR_REGION_BUSY,
  [ErrorCode.CANCELED]: ERR_CANCELED,
  // Nothing left to cancel: the caller named a batch in a state the call does not accept.
  [ErrorCode.BATCH_FINISHED]: ERR_INVALID_ARGUMENT,
  [ErrorCode.INVALID_SEGMENT]: ERR_METADATA,
  [ErrorCode.PEER_UNREACHABLE]: ERR_PEER_UNREACHABLE,
  // The peer we addressed is gone (another engine holds its port).
  [ErrorCode.PEER_CHANGED]: ERR_PEER_UNREACHABLE,
  [ErrorCode.PROTOCOL_ERROR]: ERR_PROTOCOL,
  [ErrorCode.MALFORMED]: ERR_PROTOCOL,
  [ErrorCode.FRAME_TOO_LARGE]: ERR_PROTOCOL,
  [ErrorCode.TIMEOUT]: ERR_TIMEOUT,
  [ErrorCode.PORT_IN_USE]: ERR_PORT_IN_USE,
  [ErrorCode.NOT_INITIALIZED]: ERR_NOT_INITIALIZED,
  [ErrorCode.ALREADY_INITIALIZED]: ERR_ALREADY_INITIALIZED,
  [ErrorCode.CLOSED]: ERR_CLOSED,
  [ErrorCode.NOT_SUPPORTED]: ERR_NOT_SUPPORTED,
  [ErrorCode.NO_TRANSPORT]: ERR_NOT_SUPPORTED,
  [ErrorCode.BAD_ENV]: ERR_BAD_ENV,
  [ErrorCode.METADATA_UNAVAILABLE]: ERR_METADATA,
  [ErrorCode.METADATA_REJECTED]: ERR_METADATA,
  // A registered file's read or write failed (EIO, ENOSPC...): a transfer that ran and failed.
  [ErrorCode.IO_ERROR]: ERR_FAILED,
  // Raised by the store's client only (src/store), never by a call of this API; its own API has its codes.
  [ErrorCode.STORE_ERROR]: ERR_FAILED,
  // The peer refused our connection at authentication (README, Security): for the caller, a
  // target that cannot be reached, as a refused connection is (Mooncake's -104, a rejected
  // handshake, is ERR_NOTIFY_FAILED's value here). A transfer's task failing so is still -1.
  [ErrorCode.AUTH_REQUIRED]: ERR_PEER_UNREACHABLE,
  [ErrorCode.AUTH_FAILED]: ERR_PEER_UNREACHABLE,
  [ErrorCode.TLS_REQUIRED]: ERR_PEER_UNREACHABLE,
  [ErrorCode.TLS_FAILED]: ERR_PEER_UNREACHABLE,
} as const satisfies Record<ErrorCode, ReturnCodeValue>;

export function returnCodeFor(e: TransferEngineError): number {
  if (e instanceof ApiFailure) return e.returnCode;
  // Typed, the lookup always hits; at run time a code outside ErrorCode (an error built with a cast) still gets the generic failure.
  return (RETURN_CODE_OF as Partial<Record<string, number>>)[e.code] ?? ERR_FAILED;
}

/**
 * The detail of a failed call. An Error, so `throw engine.getLastError()`
 * gives a normal stack-carrying error; `cause` is the core's TransferEngineError.
 */
export class CallError extends Error {
  override readonly name = 'CallError';
  constructor(
    /** The method that failed, e.g. 'transferSyncWrite'. */
    readonly method: string,
    /**
     * The failure's return code. It is what the call returned, except for the
     * calls whose failure value is 0 or null (allocateManagedBuffer,
     * getFirstBufferAddress, readBytesFromBuffer...): they keep the code here.
     */
    readonly returnCode: number,
    /** The core's stable error code (TE_*), e.g. 'TE_PEER_UNREACHABLE'. */
    readonly code: string,
    message: string,
    cause: unknown,
  ) {
    super(`${method}: ${message}`, { cause });
  }

  /** The name of returnCode, e.g. 'ERR_PEER_UNREACHABLE'. */
  get codeName(): ReturnCodeName | undefined {
    return returnCodeName(this.returnCode);
  }
}

/**
 * A failure whose return code is more specific than its core code's mapping
 * (managed-buffer misuse, out of memory, a refused notification).
 */
export class ApiFailure extends TransferEngineError {
  constructor(
    readonly returnCode: number,
    code: ErrorCode,
    message: string,
    cause?: unknown,
  ) {
    super(code, message, cause === undefined ? undefined : { cause });
  }
}
