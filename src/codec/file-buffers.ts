/**
 * The descriptor's file fields (ours; Mooncake's decoder ignores unknown
 * fields): `file_buffers: [{id, path, size, align}]`, the files a segment
 * serves (FileBufferDesc of Mooncake's generic NVMe-oF transport, PR #793),
 * and optionally `file_data_host` /
 * `file_data_port`, where file requests go when the owner listens for them on
 * a port of their own (the `nvmeof_generic` transport's trid). Pure functions.
 *
 * Strict, like `buffers`: a malformed entry rejects the descriptor with a
 * MALFORMED error naming it, rather than leaving a file silently missing.
 * Except the owner's handle (`pid`, `fd`, `dev`, `ino`, ours, for same-host
 * peers): a hint whose absence or bad shape only means "use TCP".
 */
import { teError, ErrorCode } from '../errors.js';
import type { JsonValue } from './json.js';
import { isJsonObject } from './json.js';

export interface FileBufferDesc {
  /** Assigned by the owner; requests name the file by it (a u32). */
  id: number;
  /** The file's path on the owner's host: informational only, requests never carry a path. */
  path: string;
  /** Bytes usable, [0, size); requests outside are refused. */
  size: number;
  /** Offsets and lengths must be multiples of this (direct I/O); 0 means no requirement (Mooncake's value). */
  align: number;
  /** 'read' when peers may only READ the file (ours; absent: read and write, like a memory buffer's `access`). */
  access?: 'read';
  /** Ours: where the owner holds the file open, for peers on the same host (src/transport/file-same-host.ts). */
  owner?: FileOwnerHandle;
}

/**
 * The owner's open descriptor of a registered file: a same-host peer reopens
 * `/proc/<pid>/fd/<fd>` and accepts it only if it is this inode (`dev`,
 * `ino`, as stat reports them) and the owner holds it open for reading and writing.
 */
export interface FileOwnerHandle {
  pid: number;
  fd: number;
  dev: bigint;
  ino: bigint;
}

export const MAX_FILE_ALIGN = 1 << 30;

function intField(v: JsonValue | undefined, what: string, min: number, max: number): number {
  // Integer literals parse as bigint (bigintIntegers), so 1.5 / 1e3 / 1000.0 arrive as numbers and fail here.
  if (typeof v !== 'bigint') throw teError(ErrorCode.MALFORMED, `${what} must be an integer`);
  if (v < BigInt(min) || v > BigInt(max)) throw teError(ErrorCode.MALFORMED, `${what} ${v} is outside [${min}, ${max}]`);
  return Number(v);
}

/** `file_buffers` as JSON, or undefined when there are none (memory-only descriptors stay as they were). */
export function encodeFileBuffers(files: readonly FileBufferDesc[] | undefined): JsonValue | undefined {
  if (!files || files.length === 0) return undefined;
  return files.map((f) => ({
    id: f.id,
    path: f.path,
    size: f.size,
    align: f.align,
    ...(f.access ? { access: f.access } : {}),
    ...(f.owner ? { pid: f.owner.pid, fd: f.owner.fd, dev: f.owner.dev, ino: f.owner.ino } : {}),
  }));
}

const U64_MAX = (1n << 64n) - 1n;

/** The owner handle of an entry, or undefined when any of its fields is missing or malformed (never an error). */
function decodeOwner(f: { [k: string]: JsonValue }): FileOwnerHandle | undefined {
  const { pid, fd, dev, ino } = f;
  const small = (v: JsonValue | undefined, min: bigint): v is bigint => typeof v === 'bigint' && v >= min && v <= 0x7fff_ffffn;
  const u64 = (v: JsonValue | undefined): v is bigint => typeof v === 'bigint' && v >= 0n && v <= U64_MAX;
  if (!small(pid, 1n) || !small(fd, 0n) || !u64(dev) || !u64(ino)) return undefined;
  return { pid: Number(pid), fd: Number(fd), dev, ino };
}

/** Decode `file_buffers` (absent: none). Ids must be unique u32s, sizes positive and below 2^53, align 0 or a power of two. */
export function decodeFileBuffers(v: JsonValue | undefined): FileBufferDesc[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw teError(ErrorCode.MALFORMED, '"file_buffers" must be an array');
  const seen = new Set<number>();
  return v.map((f, i) => {
    if (!isJsonObject(f)) throw teError(ErrorCode.MALFORMED, `file_buffers[${i}] must be an object`);
    const id = intField(f['id'], `file_buffers[${i}].id`, 0, 0xffff_ffff);
    if (seen.has(id)) throw teError(ErrorCode.MALFORMED, `file_buffers[${i}].id ${id} appears twice`);
    seen.add(id);
    const path = f['path'];
    if (typeof path !== 'string' || path.length === 0) throw teError(ErrorCode.MALFORMED, `file_buffers[${i}].path must be a non-empty string`);
    const size = intField(f['size'], `file_buffers[${i}].size`, 1, Number.MAX_SAFE_INTEGER);
    const align = f['align'] === undefined ? 0 : intField(f['align'], `file_buffers[${i}].align`, 0, MAX_FILE_ALIGN);
    if (align !== 0 && (align & (align - 1)) !== 0) throw teError(ErrorCode.MALFORMED, `file_buffers[${i}].align ${align} is not a power of two`);
    const owner = decodeOwner(f);
    // Any other value of `access` reads as read-write: the owner enforces its own setting in any case.
    return { id, path, size, align, ...(f['access'] === 'read' ? { access: 'read' as const } : {}), ...(owner ? { owner } : {}) };
  });
}

/** Where file requests go when not to tcp_data_port: `file_data_port` (and `file_data_host`, default the segment's data host). */
export interface FileEndpoint {
  host?: string;
  port: number;
}

export function encodeFileEndpoint(ep: FileEndpoint | undefined): { [k: string]: JsonValue } {
  if (!ep) return {};
  return { ...(ep.host !== undefined ? { file_data_host: ep.host } : {}), file_data_port: ep.port };
}

export function decodeFileEndpoint(host: JsonValue | undefined, port: JsonValue | undefined): FileEndpoint | undefined {
  if (port === undefined || port === null) {
    if (host !== undefined && host !== null) throw teError(ErrorCode.MALFORMED, '"file_data_host" without "file_data_port"');
    return undefined;
  }
  const p = intField(port, 'file_data_port', 1, 65535);
  if (host === undefined || host === null) return { port: p };
  if (typeof host !== 'string' || host.length === 0) throw teError(ErrorCode.MALFORMED, '"file_data_host" must be a non-empty string');
  return { host, port: p };
}
