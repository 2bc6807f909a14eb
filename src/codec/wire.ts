/**
 * Mooncake classic TCP data protocol (Mooncake's tcp_transport: SessionHeader,
 * kStatusMagic; docs/interop.md, "Sources"): a 24-byte little-endian
 * request header `{u64 size, u64 addr, u8 opcode, 7 bytes padding}` and, in
 * protocol v2, an 8-byte status frame `u64le` whose high 32 bits are "MCTV".
 * Pure functions over buffers; no I/O.
 */
import { teError, ErrorCode } from '../errors.js';

export const HEADER_SIZE = 24;
export const STATUS_SIZE = 8;

export const OPCODE_READ = 0;
export const OPCODE_WRITE = 1;
/** Bit 7 of the opcode selects protocol v2 (acknowledged). */
export const OPCODE_V2_FLAG = 0x80;

export const STATUS_MAGIC = 0x4d435456; // "MCTV"
export const STATUS_OK = 0;
export const STATUS_ADDR_REJECTED = 1;

const TWO_32 = 0x1_0000_0000;

export interface RequestHeader {
  /**
   * Payload size and target address. Values at or above 2^53 cannot be
   * represented exactly; they decode to numbers above Number.MAX_SAFE_INTEGER
   * and every range check must reject them (no region lives up there).
   */
  size: number;
  addr: number;
  /** True for WRITE; Mooncake's server treats every other opcode as READ. */
  write: boolean;
  /** True when the v2 flag (0x80) is set. */
  v2: boolean;
  /** The raw opcode byte, for diagnostics. */
  opcode: number;
}

function readU64(buf: Uint8Array, off: number): number {
  const lo = (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16)) + buf[off + 3]! * 0x100_0000;
  const hi = (buf[off + 4]! | (buf[off + 5]! << 8) | (buf[off + 6]! << 16)) + buf[off + 7]! * 0x100_0000;
  return hi * TWO_32 + lo;
}

/** Decode the header at `buf[off..off+24)`. The padding bytes are ignored (C++ peers send garbage there). */
export function decodeHeader(buf: Uint8Array, off = 0): RequestHeader {
  if (buf.length - off < HEADER_SIZE) throw teError(ErrorCode.MALFORMED, 'header needs 24 bytes');
  const opcode = buf[off + 16]!;
  return {
    size: readU64(buf, off),
    addr: readU64(buf, off + 8),
    write: (opcode & ~OPCODE_V2_FLAG) === OPCODE_WRITE,
    v2: (opcode & OPCODE_V2_FLAG) !== 0,
    opcode,
  };
}

function writeU64(buf: Uint8Array, off: number, v: number | bigint): void {
  if (typeof v === 'bigint') writeU32Pair(buf, off, Number(v & 0xffff_ffffn), Number((v >> 32n) & 0xffff_ffffn));
  else writeU32Pair(buf, off, v % TWO_32, Math.floor(v / TWO_32));
}

function writeU32Pair(buf: Uint8Array, off: number, lo: number, hi: number): void {
  buf[off] = lo & 0xff;
  buf[off + 1] = (lo >>> 8) & 0xff;
  buf[off + 2] = (lo >>> 16) & 0xff;
  buf[off + 3] = (lo >>> 24) & 0xff;
  buf[off + 4] = hi & 0xff;
  buf[off + 5] = (hi >>> 8) & 0xff;
  buf[off + 6] = (hi >>> 16) & 0xff;
  buf[off + 7] = (hi >>> 24) & 0xff;
}

/**
 * Encode a request header into `buf[off..off+24)` with zeroed padding.
 * `size` must be a safe integer; `addr` may be a bigint up to 2^64-1.
 */
export function encodeHeader(
  buf: Uint8Array,
  off: number,
  size: number,
  addr: number | bigint,
  write: boolean,
  v2: boolean,
): void {
  writeU64(buf, off, size);
  writeU64(buf, off + 8, addr);
  buf[off + 16] = (write ? OPCODE_WRITE : OPCODE_READ) | (v2 ? OPCODE_V2_FLAG : 0);
  buf.fill(0, off + 17, off + HEADER_SIZE);
}

/** Encode a v2 status frame (`code` in the low 32 bits, magic in the high 32). */
export function encodeStatus(buf: Uint8Array, off: number, code: number): void {
  // Halves written separately: magic * 2^32 + code is not exact in a double.
  writeU32Pair(buf, off, code >>> 0, STATUS_MAGIC);
}

/** The 8-byte status frame of `code`, built once per code. */
function statusFrame(code: number): Buffer {
  const b = Buffer.alloc(STATUS_SIZE);
  encodeStatus(b, 0, code);
  return b;
}

export const STATUS_OK_FRAME: Buffer = statusFrame(STATUS_OK);

export const STATUS_REJECTED_FRAME: Buffer = statusFrame(STATUS_ADDR_REJECTED);

/**
 * Decode a status frame. Returns the status code (low 32 bits), or -1 when the
 * magic does not match (the peer is not speaking v2, or the stream is out of step).
 */
export function decodeStatus(buf: Uint8Array, off = 0): number {
  if (buf.length - off < STATUS_SIZE) throw teError(ErrorCode.MALFORMED, 'status frame needs 8 bytes');
  const lo = (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16)) + buf[off + 3]! * 0x100_0000;
  const hi = (buf[off + 4]! | (buf[off + 5]! << 8) | (buf[off + 6]! << 16)) + buf[off + 7]! * 0x100_0000;
  return hi === STATUS_MAGIC ? lo : -1;
}

// ------------------------------------------------------------ file requests
//
// Our own request type (not Mooncake's) for registered files, on the same
// data port. Same 24-byte layout; the padding carries the file id:
//   0..7 u64le size, 8..15 u64le offset in the file, 16 opcode (0x90 READ,
//   0x91 WRITE: bit 4 = file, bit 0 = write, bit 7 = v2), 17..20 u32le file
//   id, 21..23 zero.
// Always v2-style: one status frame per request (READ: before the data).
// These two opcode values are the only ones our server treats differently
// from Mooncake's (which would serve them as a memory READ); Mooncake clients
// never send them, and our engines send them only to segments whose
// descriptor lists file_buffers, so a Mooncake server never receives one.

export const OPCODE_FILE_READ = 0x10 | OPCODE_V2_FLAG;
export const OPCODE_FILE_WRITE = 0x11 | OPCODE_V2_FLAG;
/** Unknown file id, range outside [0, size), misaligned for direct I/O, or a malformed file header; the server then closes. */
export const STATUS_FILE_REJECTED = 2;
/** The server's read or write of the file failed (EIO, ENOSPC, the file shrank...); the server then closes. */
export const STATUS_FILE_IO_ERROR = 3;
export const MAX_FILE_ID = 0xffff_ffff;

export interface FileRequestHeader {
  size: number;
  /** Offset in the file; values at or above 2^53 are inexact and must fail every range check. */
  offset: number;
  write: boolean;
  fileId: number;
}

/** Is this opcode byte one of our file requests? */
export function isFileOpcode(opcode: number): boolean {
  return opcode === OPCODE_FILE_READ || opcode === OPCODE_FILE_WRITE;
}

/** Encode a file request header into `buf[off..off+24)`. */
export function encodeFileHeader(buf: Uint8Array, off: number, size: number, offset: number | bigint, write: boolean, fileId: number): void {
  if (!Number.isInteger(fileId) || fileId < 0 || fileId > MAX_FILE_ID) throw teError(ErrorCode.INVALID_ARGUMENT, `file id ${String(fileId)} is not a u32`);
  writeU64(buf, off, size);
  writeU64(buf, off + 8, offset);
  buf[off + 16] = write ? OPCODE_FILE_WRITE : OPCODE_FILE_READ;
  buf[off + 17] = fileId & 0xff;
  buf[off + 18] = (fileId >>> 8) & 0xff;
  buf[off + 19] = (fileId >>> 16) & 0xff;
  buf[off + 20] = (fileId >>> 24) & 0xff;
  buf.fill(0, off + 21, off + HEADER_SIZE);
}

/** Decode a file request header. Throws MALFORMED for another opcode or non-zero reserved bytes. */
export function decodeFileHeader(buf: Uint8Array, off = 0): FileRequestHeader {
  if (buf.length - off < HEADER_SIZE) throw teError(ErrorCode.MALFORMED, 'header needs 24 bytes');
  const opcode = buf[off + 16]!;
  if (!isFileOpcode(opcode)) throw teError(ErrorCode.MALFORMED, `opcode 0x${opcode.toString(16)} is not a file request`);
  if (buf[off + 21] !== 0 || buf[off + 22] !== 0 || buf[off + 23] !== 0) {
    throw teError(ErrorCode.MALFORMED, 'file request header has non-zero reserved bytes 21..23');
  }
  return {
    size: readU64(buf, off),
    offset: readU64(buf, off + 8),
    write: opcode === OPCODE_FILE_WRITE,
    fileId: (buf[off + 17]! | (buf[off + 18]! << 8) | (buf[off + 19]! << 16)) + buf[off + 20]! * 0x100_0000,
  };
}

export const STATUS_FILE_REJECTED_FRAME: Buffer = statusFrame(STATUS_FILE_REJECTED);

export const STATUS_FILE_IO_ERROR_FRAME: Buffer = statusFrame(STATUS_FILE_IO_ERROR);

// ------------------------------------------------------------ engine identity (ours)
//
// Before its first request, each data connection of ours to a segment whose
// descriptor carries an engine_id checks who answers: a header with size 0,
// addr = the engine id the client expects, opcode 0x92 (v2 flag | 0x12). The
// server answers one status frame: STATUS_ENGINE_CONFIRMED when the id is its
// own, else STATUS_WRONG_ENGINE and it closes. The client sends nothing else
// until the confirmation has come, so no request reaches another process
// that took the peer's port. A Mooncake server (which would take 0x92 for a
// READ) answers 0 or 1, never the confirmation.

export const OPCODE_HELLO = 0x12 | OPCODE_V2_FLAG;
export const STATUS_WRONG_ENGINE = 4;
export const STATUS_ENGINE_CONFIRMED = 5;
/** Engine ids are random integers in [1, 2^53): exact as JS numbers, JSON integers and u64 header fields. */
export const MAX_ENGINE_ID = Number.MAX_SAFE_INTEGER;

/** Encode the identity check for `engineId` into `buf[off..off+24)`. */
export function encodeHello(buf: Uint8Array, off: number, engineId: number): void {
  if (!Number.isSafeInteger(engineId) || engineId <= 0) throw teError(ErrorCode.INVALID_ARGUMENT, `engine id ${String(engineId)} is not in [1, 2^53)`);
  writeU64(buf, off, 0);
  writeU64(buf, off + 8, engineId);
  buf[off + 16] = OPCODE_HELLO;
  buf.fill(0, off + 17, off + HEADER_SIZE);
}

export const STATUS_WRONG_ENGINE_FRAME: Buffer = statusFrame(STATUS_WRONG_ENGINE);

export const STATUS_ENGINE_CONFIRMED_FRAME: Buffer = statusFrame(STATUS_ENGINE_CONFIRMED);
