/**
 * Other engines' segments and the messages between engines, in the terms of
 * Mooncake's Python binding: the first buffer a segment publishes (getFirstBufferAddress), and
 * Notify messages (TransferNotify, getNotifies). The core opens, caches and
 * queues; this module only turns its answers into the binding's values.
 */
import type { TransferEngine as CoreEngine } from '../engine/engine.js';
import { ErrorCode, teError } from '../errors.js';
import { fmtAddr } from '../memory.js';

/** A Notify message: sent after a transfer (transferSync's notify), received with getNotifies(). */
export class TransferNotify {
  constructor(
    public name = '',
    public msg = '',
  ) {}
}

/** The address of the first buffer `segmentName` publishes, opening the segment (once, like Mooncake); a typed error when there is none a number can hold. */
export async function firstBufferAddress(core: CoreEngine, segmentName: string): Promise<number> {
  const first = core.getSegmentDescriptor(await core.openSegment(segmentName)).buffers[0];
  if (!first) throw teError(ErrorCode.INVALID_SEGMENT, `segment "${segmentName}" publishes no buffers`);
  if (first.addr > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw teError(ErrorCode.NOT_SUPPORTED, `segment "${segmentName}": first buffer address ${fmtAddr(first.addr)} is above 2^53 and cannot be a number`);
  }
  return Number(first.addr);
}

/** Drain the core's queue of received Notify messages, as TransferNotify objects. */
export function drainNotifies(core: CoreEngine): TransferNotify[] {
  return core.getNotifies().map((n) => new TransferNotify(n.name, n.msg));
}
