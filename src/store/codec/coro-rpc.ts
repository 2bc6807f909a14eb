/**
 * coro_rpc framing (yalantinglibs), as Mooncake Store's master speaks it
 * (docs/store-wire.md §1). Pure functions over buffers; no I/O.
 *
 *   request  = magic 0x15 | version 0 | serialize 0 | msg_type 0 | u32 seq | u32 function id
 *              | u32 body length | u32 attachment length | body | attachment        (20-byte header)
 *   response = magic 0x15 | version 0 | u8 err_code | msg_type 0 | u32 seq
 *              | u32 body length | u32 attachment length | body | attachment        (16-byte header)
 *
 * Little-endian. A function id is MD5-32 of the method's qualified name. A
 * response with err_code 0 carries the struct_pack of the return value; any
 * other carries an error message (a struct_pack string).
 */
import { teError, ErrorCode } from '../../errors.js';
import { md5Hash32, decodeMessage, encodeMessage, string, struct, u16, type Codec } from './struct-pack.js';

export const MAGIC = 0x15;
export const VERSION = 0;
export const REQUEST_HEADER_SIZE = 20;
export const RESPONSE_HEADER_SIZE = 16;

/** coro_rpc's errc values a server sends (ylt/coro_rpc/impl/errno.h). */
export const RpcErrc = {
  OK: 0,
  INVALID_RPC_ARGUMENTS: 4,
  RPC_THROW_EXCEPTION: 10,
  FUNCTION_NOT_REGISTERED: 11,
  PROTOCOL_ERROR: 12,
  UNKNOWN_PROTOCOL_VERSION: 13,
  MESSAGE_TOO_LARGE: 14,
  /** The code is above 255: the body is a (u16 code, message) pair. */
  EXTENDED: 255,
} as const;

/** The id of a function: MD5 of its qualified name, first four digest bytes big-endian. */
export function functionId(qualifiedName: string): number {
  return md5Hash32(qualifiedName);
}

/** One request frame. */
export function encodeRequest(seq: number, functionIdValue: number, body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(REQUEST_HEADER_SIZE + body.length);
  out[0] = MAGIC;
  out[1] = VERSION;
  out[2] = 0; // struct_pack
  out[3] = 0;
  out.writeUInt32LE(seq >>> 0, 4);
  out.writeUInt32LE(functionIdValue >>> 0, 8);
  out.writeUInt32LE(body.length, 12);
  out.writeUInt32LE(0, 16);
  out.set(body, REQUEST_HEADER_SIZE);
  return out;
}

export interface RequestFrame {
  seq: number;
  functionId: number;
  body: Uint8Array;
  attachment: Uint8Array;
}

export interface ResponseFrame {
  seq: number;
  /** 0: `body` is the return value; else an RPC-layer error and `body` its message. */
  errCode: number;
  body: Uint8Array;
  attachment: Uint8Array;
}

/** One response frame (our master's side, and tests). */
export function encodeResponse(seq: number, errCode: number, body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(RESPONSE_HEADER_SIZE + body.length);
  out[0] = MAGIC;
  out[1] = VERSION;
  out[2] = errCode;
  out[3] = 0;
  out.writeUInt32LE(seq >>> 0, 4);
  out.writeUInt32LE(body.length, 8);
  out.writeUInt32LE(0, 12);
  out.set(body, RESPONSE_HEADER_SIZE);
  return out;
}

/** The attachment of (almost) every frame: none. Frozen-length, shared. */
const NO_BYTES = new Uint8Array(0);

/**
 * A response frame whose body is `value` as `codec` (our master's replies):
 * the message is encoded behind room left for the header, so a reply is one
 * allocation and no copy.
 */
export function encodeReply<T>(seq: number, errCode: number, codec: Codec<T>, value: T): Buffer {
  const out = encodeMessage(codec, value, { reserve: RESPONSE_HEADER_SIZE });
  out[0] = MAGIC;
  out[1] = VERSION;
  out[2] = errCode;
  out[3] = 0;
  out.writeUInt32LE(seq >>> 0, 4);
  out.writeUInt32LE(out.length - RESPONSE_HEADER_SIZE, 8);
  out.writeUInt32LE(0, 12);
  return out;
}

/** A request frame whose body is `args` as `codec` (or an empty body for no arguments), in one buffer. */
export function encodeCall<T>(seq: number, functionIdValue: number, codec: Codec<T> | null, args: T): Buffer {
  if (codec === null) return encodeRequest(seq, functionIdValue, new Uint8Array(0));
  const out = encodeMessage(codec, args, { reserve: REQUEST_HEADER_SIZE });
  out[0] = MAGIC;
  out[1] = VERSION;
  out[2] = 0;
  out[3] = 0;
  out.writeUInt32LE(seq >>> 0, 4);
  out.writeUInt32LE(functionIdValue >>> 0, 8);
  out.writeUInt32LE(out.length - REQUEST_HEADER_SIZE, 12);
  out.writeUInt32LE(0, 16);
  return out;
}

export interface FrameDecoderOptions {
  /** Largest body plus attachment accepted; a larger length is a protocol error before anything is buffered. */
  maxFrame: number;
}

/**
 * Splits a byte stream into frames (responses on a client, requests on a
 * server). Push chunks as they come; each call returns the frames completed.
 * A bad magic or version throws TE_PROTOCOL_ERROR: the stream is out of step
 * and the connection must close.
 */
abstract class FrameDecoder<F> {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(
    private readonly headerSize: number,
    private readonly options: FrameDecoderOptions,
  ) {}

  /** Bytes held for a frame not complete yet. */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): F[] {
    const { frames, error } = this.pushUntilError(chunk);
    if (error !== null) throw error;
    return frames;
  }

  /**
   * As push(), but a protocol error ends the frames instead of discarding
   * them: the frames complete before the bad header, and the error. A server
   * answers those frames before it closes, as Mooncake's master does, however
   * the bytes were segmented.
   */
  pushUntilError(chunk: Uint8Array): { frames: F[]; error: unknown } {
    const out: F[] = [];
    try {
      this.consume(chunk, out);
      return { frames: out, error: null };
    } catch (e) {
      return { frames: out, error: e };
    }
  }

  private consume(chunk: Uint8Array, out: F[]): void {
    if (chunk.length > 0) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.buffered += chunk.length;
    }
    for (;;) {
      if (this.buffered < this.headerSize) return;
      const head = this.peek(this.headerSize);
      if (head[0] !== MAGIC) throw teError(ErrorCode.PROTOCOL_ERROR, `coro_rpc: bad magic 0x${head[0]!.toString(16)} (not a coro_rpc peer, or out of step)`);
      if (head[1] !== VERSION) throw teError(ErrorCode.PROTOCOL_ERROR, `coro_rpc: unknown protocol version ${head[1]}`);
      const [bodyLen, attachLen] = this.lengths(head);
      if (bodyLen + attachLen > this.options.maxFrame) {
        throw teError(ErrorCode.FRAME_TOO_LARGE, `coro_rpc: a frame of ${bodyLen + attachLen} bytes exceeds the ${this.options.maxFrame}-byte limit`);
      }
      const total = this.headerSize + bodyLen + attachLen;
      if (this.buffered < total) return;
      const frame = this.take(total);
      out.push(this.frame(frame, bodyLen, attachLen));
    }
  }

  protected abstract lengths(head: Buffer): [number, number];
  protected abstract frame(bytes: Buffer, bodyLen: number, attachLen: number): F;

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!;
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.buffered -= n;
    // The common case, one chunk holding exactly the frame: no views made.
    if (all.length === n) {
      this.chunks = [];
      return all;
    }
    this.chunks = [all.subarray(n)];
    return all.subarray(0, n);
  }
}

export class ResponseDecoder extends FrameDecoder<ResponseFrame> {
  constructor(options: FrameDecoderOptions) {
    super(RESPONSE_HEADER_SIZE, options);
  }

  protected lengths(head: Buffer): [number, number] {
    return [head.readUInt32LE(8), head.readUInt32LE(12)];
  }

  protected frame(b: Buffer, bodyLen: number, attachLen: number): ResponseFrame {
    const body = b.subarray(RESPONSE_HEADER_SIZE, RESPONSE_HEADER_SIZE + bodyLen);
    return { seq: b.readUInt32LE(4), errCode: b[2]!, body, attachment: attachLen === 0 ? NO_BYTES : b.subarray(RESPONSE_HEADER_SIZE + bodyLen, RESPONSE_HEADER_SIZE + bodyLen + attachLen) };
  }
}

export class RequestDecoder extends FrameDecoder<RequestFrame> {
  constructor(options: FrameDecoderOptions) {
    super(REQUEST_HEADER_SIZE, options);
  }

  protected lengths(head: Buffer): [number, number] {
    if (head[2] !== 0) throw teError(ErrorCode.PROTOCOL_ERROR, `coro_rpc: serialize type ${head[2]} (only struct_pack, 0, exists)`);
    return [head.readUInt32LE(12), head.readUInt32LE(16)];
  }

  protected frame(b: Buffer, bodyLen: number, attachLen: number): RequestFrame {
    const body = b.subarray(REQUEST_HEADER_SIZE, REQUEST_HEADER_SIZE + bodyLen);
    return {
      seq: b.readUInt32LE(4),
      functionId: b.readUInt32LE(8),
      body,
      attachment: attachLen === 0 ? NO_BYTES : b.subarray(REQUEST_HEADER_SIZE + bodyLen, REQUEST_HEADER_SIZE + bodyLen + attachLen),
    };
  }
}

const extendedError = struct({ code: u16, message: string });

/** The message of an RPC-layer error response (err_code != 0), with its code. */
export function decodeRpcError(frame: ResponseFrame): { code: number; message: string } {
  try {
    if (frame.errCode === RpcErrc.EXTENDED) return decodeMessage(extendedError, frame.body, 'coro_rpc error');
    return { code: frame.errCode, message: decodeMessage(string, frame.body, 'coro_rpc error') };
  } catch {
    return { code: frame.errCode, message: `(an unreadable error message of ${frame.body.length} bytes)` };
  }
}
