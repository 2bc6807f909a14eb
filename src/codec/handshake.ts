/**
 * Mooncake handshake frames on the RPC port (SocketHandShakePlugin in
 * Mooncake's transfer_metadata_plugin.cpp):
 *   u64le length (including the type byte) | u8 type | JSON text
 * A legacy peer may omit the type byte; it is detected by a first payload byte
 * above 3 (e.g. '{') and treated as a Connection message.
 */
import { teError, ErrorCode } from '../errors.js';

export const HandshakeType = {
  CONNECTION: 0,
  METADATA: 1,
  NOTIFY: 2,
  PROBE: 3,
  /** Legacy frame without a type byte; replies are written without one too. */
  LEGACY: 0xff,
} as const;
export type HandshakeType = (typeof HandshakeType)[keyof typeof HandshakeType];

/** MC_HANDSHAKE_MAX_LENGTH default: 1 MiB. */
export const DEFAULT_MAX_FRAME = 1 << 20;

export interface HandshakeFrame {
  type: HandshakeType;
  /** The JSON text exactly as received (C++ peers append "\n"). */
  json: string;
}

export function encodeHandshakeFrame(type: HandshakeType, json: string): Buffer {
  const body = Buffer.from(json, 'utf8');
  const legacy = type === HandshakeType.LEGACY;
  const len = body.length + (legacy ? 0 : 1);
  const out = Buffer.allocUnsafe(8 + len);
  out.writeBigUInt64LE(BigInt(len), 0);
  let off = 8;
  if (!legacy) out[off++] = type;
  body.copy(out, off);
  return out;
}

export interface HandshakeDecoderOptions {
  /**
   * 'error' (default): bytes after the frame are MALFORMED. 'ignore': they are
   * dropped, as Mooncake's server does (it reads exactly one frame, replies,
   * and reads nothing more but the close).
   */
  trailing?: 'error' | 'ignore';
}

/**
 * Incremental decoder: feed chunks, get at most one frame (one exchange per
 * connection). Throws a typed error as soon as the length prefix is invalid,
 * before buffering the body.
 */
export class HandshakeFrameDecoder {
  private chunks: Buffer[] = [];
  private have = 0;
  private need = -1;
  /** The frame was returned: later bytes are trailing (dropped or an error), never a second frame. */
  private done = false;
  private readonly ignoreTrailing: boolean;

  constructor(
    private readonly maxLength = DEFAULT_MAX_FRAME,
    options: HandshakeDecoderOptions = {},
  ) {
    this.ignoreTrailing = options.trailing === 'ignore';
  }

  /** Returns the frame once complete, otherwise null. Bytes past the frame are an error unless ignored. */
  push(chunk: Buffer): HandshakeFrame | null {
    if (this.done) {
      if (chunk.length > 0 && !this.ignoreTrailing) throw teError(ErrorCode.MALFORMED, 'unexpected bytes after the handshake frame');
      return null;
    }
    this.chunks.push(chunk);
    this.have += chunk.length;
    if (this.need < 0) {
      if (this.have < 8) return null;
      const all = this.flatten();
      const len = all.readBigUInt64LE(0);
      if (len === 0n) throw teError(ErrorCode.MALFORMED, 'handshake frame length is 0');
      if (len > BigInt(this.maxLength)) {
        throw teError(ErrorCode.FRAME_TOO_LARGE, `handshake frame of ${len} bytes exceeds the ${this.maxLength}-byte limit`);
      }
      this.need = 8 + Number(len);
    }
    if (this.have < this.need) return null;
    if (this.have > this.need && !this.ignoreTrailing) throw teError(ErrorCode.MALFORMED, 'unexpected bytes after the handshake frame');
    const all = this.flatten();
    this.done = true;
    this.chunks = [];
    return decodeHandshakeBody(all.subarray(8, this.need));
  }

  private flatten(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }
}

function decodeHandshakeBody(body: Buffer): HandshakeFrame {
  const first = body[0]!;
  if (first > 3) return { type: HandshakeType.LEGACY, json: body.toString('utf8') };
  return { type: first as HandshakeType, json: body.subarray(1).toString('utf8') };
}

/** Decode one complete frame from a buffer (for tests and fuzzing). */
export function decodeHandshakeFrame(buf: Buffer, maxLength = DEFAULT_MAX_FRAME): HandshakeFrame {
  const d = new HandshakeFrameDecoder(maxLength);
  const f = d.push(buf);
  if (!f) throw teError(ErrorCode.MALFORMED, 'truncated handshake frame');
  return f;
}
