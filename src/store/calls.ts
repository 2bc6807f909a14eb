/**
 * What a failed store call leaves behind: the code it returns (Mooncake's
 * ErrorCode) and the StoreCallError getLastError() gives. Only
 * TransferEngineErrors are failures; anything else (a TypeError for a wrong
 * argument, a bug) propagates.
 */
import { ErrorCode, TransferEngineError } from '../errors.js';
import { StoreErrorCode } from './master-protocol.js';
import { StoreError } from './store-errors.js';

/** The detail of the last failed call. */
export class StoreCallError extends Error {
  override readonly name = 'StoreCallError';
  constructor(
    readonly method: string,
    /** What the call returned (Mooncake's ErrorCode). */
    readonly returnCode: number,
    message: string,
    cause: unknown,
  ) {
    super(`${method}: ${message}`, { cause });
  }
}

/** Our errors that mean "the call's arguments (or the store's state) cannot work": Mooncake's INVALID_PARAMS. */
const INVALID_PARAMS_CODES: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.INVALID_ARGUMENT,
  ErrorCode.ADDRESS_NOT_REGISTERED,
  ErrorCode.MEMORY_DETACHED,
  ErrorCode.ADDRESS_OVERLAPPED,
  ErrorCode.CLOSED,
  ErrorCode.NOT_INITIALIZED,
  ErrorCode.ALREADY_INITIALIZED,
]);

export class CallRecorder {
  /** getLastError()'s answer: one record for the whole store, whichever part failed. */
  private lastError: StoreCallError | null = null;

  /** The detail of the last failed call, or null. */
  get last(): StoreCallError | null {
    return this.lastError;
  }

  /** Record a failure; return the code the call returns. Errors that are not ours (bugs) propagate. */
  fail(method: string, e: unknown): number {
    if (!(e instanceof TransferEngineError)) throw e;
    let code: number;
    if (e instanceof StoreError) code = e.storeCode;
    else if (INVALID_PARAMS_CODES.has(e.code)) code = StoreErrorCode.INVALID_PARAMS;
    else code = StoreErrorCode.INTERNAL_ERROR;
    this.lastError = new StoreCallError(method, code, e.message, e);
    return code;
  }
}
