/**
 * A descriptor's buffers and files as the status documents show them: hex
 * addresses, numeric sizes, the first MAX_LISTED of each (a descriptor may
 * hold ~500k buffers; the totals are counted apart).
 */
import type { SegmentDesc } from '../codec/descriptor.js';
import { MAX_LISTED, type BufferStatus, type FileStatus } from './types.js';

/** The first MAX_LISTED buffers of a descriptor. */
export function buffersOf(desc: SegmentDesc): BufferStatus[] {
  return desc.buffers.slice(0, MAX_LISTED).map((b) => ({ name: b.name, addr: `0x${b.addr.toString(16)}`, length: Number(b.length), ...(b.access ? { access: b.access } : {}) }));
}

/** The first MAX_LISTED files of a descriptor. */
export function filesOf(desc: SegmentDesc): FileStatus[] {
  return (desc.fileBuffers ?? []).slice(0, MAX_LISTED).map((f) => ({ path: f.path, size: f.size, ...(f.access ? { access: f.access } : {}) }));
}
