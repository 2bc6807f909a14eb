/**
 * Request -> Plan: each request of a batch is checked and resolved before any
 * of them starts (all or nothing), into a job for the transports
 * (src/transport/transport.ts), or a job that waits for its segment's
 * descriptor. The dispatcher (dispatch.ts) carries plans out. A bad request
 * is a typed error naming it.
 */
import { teError, ErrorCode } from '../errors.js';
import { checkFileId, checkFileRange, type LocalFiles } from '../file/local-files.js';
import { detachedError, fmtAddr, type MemoryRegistry, type Region } from '../memory.js';
import type { Job } from '../transport/transport.js';
import type { PendingOpen, RemoteSegment, SegmentTable } from './segments.js';
import { LOCAL_SEGMENT, TransferOpcode, type RequestRanges, type TransferRequest } from './types.js';

const U64_MAX = (1n << 64n) - 1n;

export type Plan =
  /** Resolved: the transports take it. `seg` is the peer's segment (retry rounds refetch it); null for our own memory and files. */
  | (Job & { readonly kind: 'ready'; readonly seg: RemoteSegment | null })
  /** A peer whose descriptor is still being fetched: the task waits for it, its memory pinned. */
  | { readonly kind: 'opening'; readonly write: boolean; readonly local: Uint8Array; readonly region: Region; readonly target: bigint; readonly pending: PendingOpen };

export interface PlannerContext {
  readonly registry: MemoryRegistry;
  readonly files: LocalFiles;
  readonly segments: SegmentTable;
  /** Whether the tcp transport is installed now (installTransport / uninstallTransport). */
  tcpInstalled(): boolean;
}

/** `[addr, addr+length)` of registered memory, checked: inside one region, not detached. */
export function resolveLocal(registry: MemoryRegistry, addr: number, length: number, what: string): { region: Region; offset: number } {
  if (!Number.isSafeInteger(addr) || addr <= 0) throw teError(ErrorCode.INVALID_ARGUMENT, `${what} ${String(addr)} is not a valid address`);
  if (!Number.isSafeInteger(length) || length <= 0) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `length ${String(length)} must be a positive integer`);
  }
  const r = registry.resolve(addr, length);
  if (!r) {
    throw teError(ErrorCode.ADDRESS_NOT_REGISTERED, `${what} range [${fmtAddr(addr)}, +${length}) is not inside one registered region`);
  }
  if (r.region.detached) throw detachedError(r.region, what);
  return r;
}

/**
 * The checks of request `i` that need no target segment: an object, a known
 * opcode, a local range inside one registered region (not detached), a target
 * address range inside the 64-bit space. Returns what planRequest goes on with.
 */
export function checkRequest(registry: MemoryRegistry, r: RequestRanges, i: number): { write: boolean; local: Uint8Array; region: Region; target: bigint } {
  if (typeof r !== 'object' || r === null) throw teError(ErrorCode.INVALID_ARGUMENT, `request ${i} is not an object`);
  if (r.opcode !== TransferOpcode.READ && r.opcode !== TransferOpcode.WRITE) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `request ${i}: unknown opcode ${String(r.opcode)}`);
  }
  const write = r.opcode === TransferOpcode.WRITE;
  const src = resolveLocal(registry, r.source, r.length, `request ${i}: source`);
  const local = src.region.bytes.subarray(src.offset, src.offset + r.length);
  let target: bigint;
  if (typeof r.targetOffset === 'bigint') target = r.targetOffset;
  else if (Number.isSafeInteger(r.targetOffset) && r.targetOffset >= 0) target = BigInt(r.targetOffset);
  else throw teError(ErrorCode.INVALID_ARGUMENT, `request ${i}: targetOffset ${String(r.targetOffset)} is not a valid address`);
  if (target < 0n || target + BigInt(r.length) - 1n > U64_MAX) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `request ${i}: target range overflows the 64-bit address space`);
  }
  return { write, local, region: src.region, target };
}

/** Request `i` of a batch as a Plan, or a typed error. */
export function planRequest(ctx: PlannerContext, r: TransferRequest, i: number): Plan {
  const { write, local, region, target } = checkRequest(ctx.registry, r, i);
  if (r.fileId !== undefined) return planFile(ctx, r, i, write, local, region, target);
  if (r.targetId === LOCAL_SEGMENT) {
    // Served by a copy; validated now so that a bad range is a typed error, not a late failure.
    const t = target <= BigInt(Number.MAX_SAFE_INTEGER) ? ctx.registry.resolve(Number(target), r.length) : null;
    if (!t) {
      throw teError(ErrorCode.ADDRESS_NOT_REGISTERED, `request ${i}: target range [${fmtAddr(target)}, +${r.length}) is not inside one local region`);
    }
    if (t.region.detached) throw detachedError(t.region, `request ${i}: target memory`);
    return { kind: 'ready', write, local, region, target, to: { kind: 'memory', bytes: t.region.bytes.subarray(t.offset, t.offset + r.length) }, seg: null };
  }
  const seg = ctx.segments.get(r.targetId);
  const pending = seg ? undefined : ctx.segments.opening(r.targetId);
  if (!seg && !pending) throw teError(ErrorCode.INVALID_SEGMENT, `request ${i}: segment handle ${String(r.targetId)} is not open`);
  if (!ctx.tcpInstalled()) throw teError(ErrorCode.NO_TRANSPORT, `request ${i}: the tcp transport is not installed`);
  return seg ? { kind: 'ready', write, local, region, target, to: seg.endpoint, seg } : { kind: 'opening', write, local, region, target, pending: pending! };
}

/** A request to a file: checked against the file's size and alignment (ours, or the peer's descriptor) before anything moves. */
function planFile(ctx: PlannerContext, r: TransferRequest, i: number, write: boolean, local: Uint8Array, region: Region, target: bigint): Plan {
  const what = `request ${i}`;
  const fileId = checkFileId(what, r.fileId);
  if (r.targetId === LOCAL_SEGMENT) {
    const file = ctx.files.byId(fileId);
    if (!file) throw teError(ErrorCode.INVALID_ARGUMENT, `${what}: no local file is registered with id ${fileId}`);
    // Local transfers ignore 'none' (as for memory), but a 'read' file is open read-only.
    if (write && file.access === 'read') throw teError(ErrorCode.INVALID_ARGUMENT, `${what}: file id ${fileId} is registered read-only`);
    checkFileRange(what, fileId, target, local.length, file.size, file.align);
    return { kind: 'ready', write, local, region, target, to: { kind: 'file', file }, seg: null };
  }
  const seg = ctx.segments.get(r.targetId);
  if (!seg) {
    const opening = ctx.segments.opening(r.targetId) !== undefined;
    throw teError(ErrorCode.INVALID_SEGMENT, `${what}: segment handle ${String(r.targetId)} is ${opening ? 'still opening: file requests need its descriptor, await openSegment() first' : 'not open'}`);
  }
  if (!ctx.tcpInstalled()) throw teError(ErrorCode.NO_TRANSPORT, `${what}: the tcp transport is not installed`);
  // Only segments that list files get file requests: a Mooncake peer never sees one.
  const desc = seg.desc.fileBuffers?.find((f) => f.id === fileId);
  if (!desc) {
    const listed = seg.desc.fileBuffers?.map((f) => f.id).join(', ');
    throw teError(
      ErrorCode.INVALID_ARGUMENT,
      `${what}: segment "${seg.name}" publishes ${listed ? `no file with id ${fileId} (its files: ${listed})` : 'no files'}; ` +
        'its descriptor is cached at openSegment, so reopen the segment to see files registered since',
    );
  }
  if (write && desc.access === 'read') throw teError(ErrorCode.INVALID_ARGUMENT, `${what}: file id ${fileId} of segment "${seg.name}" is read-only`);
  checkFileRange(what, fileId, target, local.length, desc.size, desc.align);
  // A same-host peer's file is read and written here if it opens here (src/transport/file-same-host.ts), else over TCP.
  return { kind: 'ready', write, local, region, target, to: { kind: 'peer-file', peer: seg.endpoint, file: desc }, seg };
}
