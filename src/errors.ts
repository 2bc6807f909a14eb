/**
 * Typed errors. Every error the engine raises or records on a task is a
 * TransferEngineError with a stable `code`, so callers can branch on it
 * without parsing messages (the undici convention).
 */
export const ErrorCode = {
  /** A caller passed a value of the wrong type, range or shape. */
  INVALID_ARGUMENT: 'TE_INVALID_ARGUMENT',
  /** A local address range is not inside one registered region. */
  ADDRESS_NOT_REGISTERED: 'TE_ADDRESS_NOT_REGISTERED',
  /** The peer refused the address range (outside its regions, or not remotely accessible). */
  ADDRESS_REJECTED: 'TE_ADDRESS_REJECTED',
  /**
   * The memory is registered already: the same buffer, or a view overlapping
   * one registered earlier (two addresses for the same bytes would let writes
   * through one alias land under the other).
   */
  ADDRESS_OVERLAPPED: 'TE_ADDRESS_OVERLAPPED',
  /**
   * Registered memory is no longer usable: its ArrayBuffer was transferred
   * (detached, e.g. to a worker) or a resizable one shrank below the region.
   * Unregister it; the engine's other memory is unaffected.
   */
  MEMORY_DETACHED: 'TE_MEMORY_DETACHED',
  /** Memory could not be allocated (the process or the host is out of it). */
  OUT_OF_MEMORY: 'TE_OUT_OF_MEMORY',
  /** A region cannot be unregistered while transfers use it. */
  REGION_BUSY: 'TE_REGION_BUSY',
  /** The batch id is unknown or already freed. */
  INVALID_BATCH: 'TE_INVALID_BATCH',
  /** More tasks submitted than the batch was allocated for. */
  BATCH_FULL: 'TE_BATCH_FULL',
  /** freeBatchID on a batch with unfinished tasks, or canceled ones whose wire requests have not all ended. */
  BATCH_BUSY: 'TE_BATCH_BUSY',
  /** The task was canceled (cancelBatch, or the signal given to waitBatch) before it ended. */
  CANCELED: 'TE_CANCELED',
  /** cancelBatch on a batch whose tasks have all ended: nothing was canceled. */
  BATCH_FINISHED: 'TE_BATCH_FINISHED',
  /** The segment handle or name is unknown or closed. */
  INVALID_SEGMENT: 'TE_INVALID_SEGMENT',
  /** Nobody answers at the segment's address, or the connection broke. */
  PEER_UNREACHABLE: 'TE_PEER_UNREACHABLE',
  /**
   * Another engine answers at the segment's address: the peer the descriptor
   * names is gone (it restarted, or its port was taken by a new process).
   * The engine refetches the descriptor before giving up (README, Engine identity).
   */
  PEER_CHANGED: 'TE_PEER_CHANGED',
  /** The peer sent bytes that do not follow the protocol. */
  PROTOCOL_ERROR: 'TE_PROTOCOL_ERROR',
  /** A frame or descriptor could not be decoded. */
  MALFORMED: 'TE_MALFORMED',
  /** A frame is larger than the configured limit. */
  FRAME_TOO_LARGE: 'TE_FRAME_TOO_LARGE',
  /** An operation did not finish within its deadline. */
  TIMEOUT: 'TE_TIMEOUT',
  /** A listening port could not be bound. */
  PORT_IN_USE: 'TE_PORT_IN_USE',
  /** The engine was used before init() or after close(). */
  NOT_INITIALIZED: 'TE_NOT_INITIALIZED',
  ALREADY_INITIALIZED: 'TE_ALREADY_INITIALIZED',
  CLOSED: 'TE_CLOSED',
  /** The capability cannot run on this host (RDMA, GPU memory, NVMe-oF kernel paths). */
  NOT_SUPPORTED: 'TE_NOT_SUPPORTED',
  /** No installed transport can reach the segment. */
  NO_TRANSPORT: 'TE_NO_TRANSPORT',
  /** An environment variable holds a malformed value. */
  BAD_ENV: 'TE_BAD_ENV',
  /** The metadata service (HTTP, etcd, Redis) cannot be reached or failed the request. */
  METADATA_UNAVAILABLE: 'TE_METADATA_UNAVAILABLE',
  /** The metadata service refused the request: bad credentials, a name already in use, a 4xx answer. */
  METADATA_REJECTED: 'TE_METADATA_REJECTED',
  /** Reading or writing a registered file failed (EIO, ENOSPC, the file shrank under us, ...). */
  IO_ERROR: 'TE_IO_ERROR',
  /** Mooncake Store's master refused a call: the error carries Mooncake's ErrorCode (`storeCode`). */
  STORE_ERROR: 'TE_STORE_ERROR',
  /** The peer requires our shared-secret authentication and this engine has no secret. */
  AUTH_REQUIRED: 'TE_AUTH_REQUIRED',
  /** Authentication failed: the secrets differ, or the peer does not authenticate while we require it. */
  AUTH_FAILED: 'TE_AUTH_FAILED',
  /** The peer takes only mutual TLS and this engine has no TE_TLS_* settings. */
  TLS_REQUIRED: 'TE_TLS_REQUIRED',
  /**
   * Mutual TLS failed: a certificate was refused (expired, another CA, another
   * name, self-signed), or the peer does not speak TLS while we require it.
   */
  TLS_FAILED: 'TE_TLS_FAILED',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class TransferEngineError extends Error {
  override readonly name = 'TransferEngineError';
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Shorthand used throughout: `throw teError(ErrorCode.X, '...')`. */
export function teError(code: ErrorCode, message: string, cause?: unknown): TransferEngineError {
  return new TransferEngineError(code, message, cause === undefined ? undefined : { cause });
}

export function isTransferEngineError(e: unknown): e is TransferEngineError {
  return e instanceof TransferEngineError;
}
