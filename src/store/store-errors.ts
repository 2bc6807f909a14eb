/**
 * Errors of the store client: the master's own error codes (Mooncake's
 * ErrorCode, returned as they are by the store's calls), and the version
 * check every connection to a master starts with.
 */
import { TransferEngineError, ErrorCode } from '../errors.js';
import { Master, STORE_PROTOCOL_VERSION, StoreErrorCode, storeErrorName } from './master-protocol.js';
import type { RpcClient } from './rpc-client.js';

/** The master answered a call with an error code (the error side of its tl::expected), or a call was refused before it. */
export class StoreError extends TransferEngineError {
  constructor(
    /** Mooncake's ErrorCode: what the store's calls return. */
    readonly storeCode: number,
    message: string,
    cause?: unknown,
  ) {
    super(ErrorCode.STORE_ERROR, message, cause === undefined ? undefined : { cause });
  }
}

export function storeError(code: number, what: string): StoreError {
  return new StoreError(code, `${what}: the master answered ${storeErrorName(code) ?? 'error'} (${code})`);
}

/** ServiceReady: the master must speak our store version (Mooncake refuses another with INVALID_VERSION). */
export async function checkVersion(rpc: RpcClient): Promise<void> {
  let r;
  try {
    r = await rpc.call(Master.ServiceReady, null);
  } catch (e) {
    // A reply of another type (its type hash or layout differs) is another version of the protocol.
    if (!(e instanceof TransferEngineError) || e.code !== ErrorCode.MALFORMED) throw e;
    throw new StoreError(
      StoreErrorCode.INVALID_VERSION,
      `the master at ${rpc.label} answered ServiceReady in another format (${e.message}): it speaks another store version than "${STORE_PROTOCOL_VERSION}" (that of mooncake 0.3.13.post1), which this client speaks`,
      e,
    );
  }
  if (!r.ok) throw storeError(r.error, 'ServiceReady');
  if (r.value !== STORE_PROTOCOL_VERSION) {
    throw new StoreError(
      StoreErrorCode.INVALID_VERSION,
      `the master at ${rpc.label} speaks store version "${r.value}"; this client speaks "${STORE_PROTOCOL_VERSION}" (that of mooncake 0.3.13.post1)`,
    );
  }
}
