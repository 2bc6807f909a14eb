/**
 * struct_pack (yalantinglibs), the body encoding of Mooncake Store's master
 * wire, as the wheel 0.3.13.post1 writes and reads it (docs/store-wire.md §2).
 * Pure functions over buffers; no I/O.
 *
 * A message is: u32 hash | [u8 metainfo | layout string | 00] | payload. The
 * hash is MD5-32 of the type's layout string (its "type literal") with bit 0
 * saying a metainfo byte follows. Every container length in a message has one
 * width (1, 2, 4 or 8 bytes), chosen by the largest container and recorded in
 * the metainfo. Values are fixed-width little-endian; optionals and expecteds
 * are a flag byte then the value; variants a u8 index then the alternative;
 * structs and tuples their fields in order, with no tags and no padding
 * (except trivially copyable pairs, copied whole).
 *
 * Types are described by codecs built from the combinators below; each knows
 * its layout string, its payload encoding, and the TypeScript type of its
 * values, so a message codec is typed end to end.
 */
import { createHash } from 'node:crypto';
import { teError, ErrorCode } from '../../errors.js';

/** How wide every container length of a message is: 1, 2, 4 or 8 bytes. */
type LengthWidth = 1 | 2 | 4 | 8;

/** Reading past the end, or a value that cannot be: the message is malformed. */
function malformed(what: string): never {
  throw teError(ErrorCode.MALFORMED, `struct_pack: ${what}`);
}

export class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(
    readonly width: LengthWidth,
    size = 256,
  ) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** Advance over `n` bytes left as they are (space reserved for the caller). */
  skip(n: number): void {
    this.room(n);
    this.pos += n;
  }

  u8(v: number): void {
    this.room(1);
    this.buf[this.pos++] = v & 0xff;
  }

  /** Fixed-width integer of `bytes` bytes, little-endian (two's complement for negatives). */
  int(v: number | bigint, bytes: 1 | 2 | 4 | 8): void {
    this.room(bytes);
    if (bytes === 8) this.buf.writeBigUInt64LE(typeof v === 'bigint' && v >= 0n ? v : BigInt.asUintN(64, BigInt(v)), this.pos);
    // Numbers up to 32 bits without BigInt: every request and reply writes several of these.
    else if (typeof v === 'number') this.buf.writeUIntLE(v < 0 ? v + 2 ** (bytes * 8) : v, this.pos, bytes);
    else this.buf.writeUIntLE(Number(BigInt.asUintN(bytes * 8, v)), this.pos, bytes);
    this.pos += bytes;
  }

  f64(v: number): void {
    this.room(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  f32(v: number): void {
    this.room(4);
    this.buf.writeFloatLE(v, this.pos);
    this.pos += 4;
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** A container length, in the message's width. */
  length(n: number): void {
    this.int(n, this.width);
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

export class Reader {
  pos: number;

  constructor(
    readonly buf: Uint8Array,
    readonly width: LengthWidth,
    start = 0,
    /** Where the message ends (bytes after it are not read). */
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  private need(n: number, what: string): void {
    if (this.end - this.pos < n) malformed(`${what} needs ${n} byte(s), ${this.end - this.pos} left`);
  }

  u8(what = 'a byte'): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }

  uint(bytes: 1 | 2 | 4, what: string): number {
    this.need(bytes, what);
    let v = 0;
    for (let i = bytes - 1; i >= 0; i--) v = v * 256 + this.buf[this.pos + i]!;
    this.pos += bytes;
    return v;
  }

  int(bytes: 1 | 2 | 4, what: string): number {
    const u = this.uint(bytes, what);
    const bits = bytes * 8;
    return u >= 2 ** (bits - 1) ? u - 2 ** bits : u;
  }

  private dv: DataView | undefined;

  /** One view for the whole message, made on the first 64-bit or float read. */
  private view(): DataView {
    return (this.dv ??= new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength));
  }

  u64(what: string): bigint {
    this.need(8, what);
    const v = this.view().getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }

  i64(what: string): bigint {
    return BigInt.asIntN(64, this.u64(what));
  }

  f64(what: string): number {
    this.need(8, what);
    const v = this.view().getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  f32(what: string): number {
    this.need(4, what);
    const v = this.view().getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  bytes(n: number, what: string): Uint8Array {
    this.need(n, what);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  /**
   * A container length. A count of elements each at least `minElement`
   * bytes long cannot exceed what is left: a lying length is refused before
   * anything is allocated for it.
   */
  length(what: string, minElement: number): number {
    let n: number;
    if (this.width === 8) {
      const big = this.u64(`${what} length`);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) malformed(`${what} length ${big} is too large`);
      n = Number(big);
    } else n = this.uint(this.width, `${what} length`);
    if (minElement > 0 && n > (this.end - this.pos) / minElement) malformed(`${what} of ${n} element(s) does not fit in the ${this.end - this.pos} byte(s) left`);
    return n;
  }
}

/** A type: its layout string, how its values are written and read, and its values' TypeScript type. */
export interface Codec<T> {
  /** The type literal (docs/store-wire.md §2.3): type codes, never a 00 byte. */
  readonly layout: Uint8Array;
  /** The fewest payload bytes a value takes (to bound lengths read from the wire). */
  readonly minSize: number;
  /** The largest container length inside `v` (for the message's length width); 0 without containers. */
  maxLength(v: T): number;
  write(w: Writer, v: T): void;
  read(r: Reader): T;
}

/** The TypeScript type of a codec's values. */
export type Infer<C> = C extends Codec<infer T> ? T : never;

const code = (...bytes: number[]): Uint8Array => Uint8Array.from(bytes);
const concat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(Buffer.concat(parts));

function fixedInt(typeCode: number, bytes: 1 | 2 | 4, signed: boolean, name: string): Codec<number> {
  const lo = signed ? -(2 ** (bytes * 8 - 1)) : 0;
  const hi = signed ? 2 ** (bytes * 8 - 1) - 1 : 2 ** (bytes * 8) - 1;
  return {
    layout: code(typeCode),
    minSize: bytes,
    maxLength: () => 0,
    write: (w, v) => {
      if (!Number.isInteger(v) || v < lo || v > hi) throw teError(ErrorCode.INVALID_ARGUMENT, `struct_pack: ${String(v)} is not a ${name}`);
      w.int(v, bytes);
    },
    read: (r) => (signed ? r.int(bytes, name) : r.uint(bytes, name)),
  };
}

function int64(typeCode: number, signed: boolean, name: string): Codec<bigint> {
  const lo = signed ? -(1n << 63n) : 0n;
  const hi = signed ? (1n << 63n) - 1n : (1n << 64n) - 1n;
  return {
    layout: code(typeCode),
    minSize: 8,
    maxLength: () => 0,
    write: (w, v) => {
      if (typeof v !== 'bigint' || v < lo || v > hi) throw teError(ErrorCode.INVALID_ARGUMENT, `struct_pack: ${String(v)} is not a ${name} (a bigint)`);
      w.int(v, 8);
    },
    read: (r) => (signed ? r.i64(name) : r.u64(name)),
  };
}

export const i8 = fixedInt(0x05, 1, true, 'int8');
export const u8 = fixedInt(0x06, 1, false, 'uint8');
export const i16 = fixedInt(0x07, 2, true, 'int16');
export const u16 = fixedInt(0x08, 2, false, 'uint16');
export const i32 = fixedInt(0x01, 4, true, 'int32');
export const u32 = fixedInt(0x02, 4, false, 'uint32');
export const i64 = int64(0x03, true, 'int64');
export const u64 = int64(0x04, false, 'uint64');

export const bool: Codec<boolean> = {
  layout: code(0x0b),
  minSize: 1,
  maxLength: () => 0,
  write: (w, v) => w.u8(v ? 1 : 0),
  read: (r) => {
    const b = r.u8('bool');
    if (b > 1) malformed(`bool byte ${b}`);
    return b === 1;
  },
};

export const f64: Codec<number> = { layout: code(0x12), minSize: 8, maxLength: () => 0, write: (w, v) => w.f64(v), read: (r) => r.f64('double') };
export const f32: Codec<number> = { layout: code(0x11), minSize: 4, maxLength: () => 0, write: (w, v) => w.f32(v), read: (r) => r.f32('float') };

/** std::monostate, and the `void` of expected<void, E>: no bytes. */
export const monostate: Codec<null> = { layout: code(0xfa), minSize: 0, maxLength: () => 0, write: () => {}, read: () => null };

/** std::string as UTF-8 text (Python's str keys and names are UTF-8). */
export const string: Codec<string> = {
  layout: code(0x80, 0x0c),
  minSize: 0,
  maxLength: (v) => (typeof v === 'string' ? Buffer.byteLength(v) : 0), // a non-string is refused by write
  write: (w, v) => {
    if (typeof v !== 'string') throw teError(ErrorCode.INVALID_ARGUMENT, `struct_pack: ${typeof v} is not a string`);
    const b = Buffer.from(v, 'utf8');
    w.length(b.length);
    w.bytes(b);
  },
  read: (r) => Buffer.from(r.bytes(r.length('string', 1), 'string bytes')).toString('utf8'),
};

/** std::string as raw bytes (values, where the bytes are not text). */
export const bytes: Codec<Uint8Array> = {
  layout: code(0x80, 0x0c),
  minSize: 0,
  maxLength: (v) => (v instanceof Uint8Array ? v.length : 0),
  write: (w, v) => {
    if (!(v instanceof Uint8Array)) throw teError(ErrorCode.INVALID_ARGUMENT, 'struct_pack: bytes must be a Uint8Array');
    w.length(v.length);
    w.bytes(v);
  },
  read: (r) => r.bytes(r.length('string', 1), 'string bytes'),
};

export function vector<T>(of: Codec<T>): Codec<T[]> {
  return {
    layout: concat(code(0x84), of.layout),
    minSize: 0,
    maxLength: (v) => {
      if (!Array.isArray(v)) return 0; // refused by write
      let m = v.length;
      for (const x of v) m = Math.max(m, of.maxLength(x));
      return m;
    },
    write: (w, v) => {
      if (!Array.isArray(v)) throw teError(ErrorCode.INVALID_ARGUMENT, 'struct_pack: a vector must be an array');
      w.length(v.length);
      for (const x of v) of.write(w, x);
    },
    read: (r) => {
      const n = r.length('vector', Math.max(1, of.minSize));
      const out: T[] = new Array<T>(n);
      for (let i = 0; i < n; i++) out[i] = of.read(r);
      return out;
    },
  };
}

export function map<K, V>(key: Codec<K>, value: Codec<V>): Codec<Map<K, V>> {
  return {
    layout: concat(code(0x82), key.layout, value.layout),
    minSize: 0,
    maxLength: (m) => {
      let n = m.size;
      for (const [k, v] of m) n = Math.max(n, key.maxLength(k), value.maxLength(v));
      return n;
    },
    write: (w, m) => {
      w.length(m.size);
      for (const [k, v] of m) {
        key.write(w, k);
        value.write(w, v);
      }
    },
    read: (r) => {
      const n = r.length('map', Math.max(1, key.minSize + value.minSize));
      const out = new Map<K, V>();
      for (let i = 0; i < n; i++) out.set(key.read(r), value.read(r));
      return out;
    },
  };
}

/** std::optional<T>: null when absent. */
export function optional<T>(of: Codec<T>): Codec<T | null> {
  return {
    layout: concat(code(0x85), of.layout),
    minSize: 1,
    maxLength: (v) => (v === null || v === undefined ? 0 : of.maxLength(v)),
    write: (w, v) => {
      if (v === null || v === undefined) w.u8(0);
      else {
        w.u8(1);
        of.write(w, v);
      }
    },
    read: (r) => {
      const has = r.u8('optional flag');
      if (has > 1) malformed(`optional flag ${has}`);
      return has === 1 ? of.read(r) : null;
    },
  };
}

/** tl::expected<T, E>: `{ ok: true, value }` or `{ ok: false, error }`. */
export type Expected<T, E> = { ok: true; value: T } | { ok: false; error: E };

export function expected<T, E>(value: Codec<T>, error: Codec<E>): Codec<Expected<T, E>> {
  return {
    layout: concat(code(0x87), value.layout, error.layout),
    minSize: 1,
    maxLength: (v) => (typeof v !== 'object' || v === null ? 0 : v.ok ? value.maxLength(v.value) : error.maxLength(v.error)),
    write: (w, v) => {
      w.u8(v.ok ? 1 : 0);
      if (v.ok) value.write(w, v.value);
      else error.write(w, v.error);
    },
    read: (r) => {
      const has = r.u8('expected flag');
      if (has > 1) malformed(`expected flag ${has}`);
      return has === 1 ? { ok: true, value: value.read(r) } : { ok: false, error: error.read(r) };
    },
  };
}

/** std::variant<A, B, ...>: `{ index, value }`, the value typed by its alternative. */
export type Variant<Alts extends readonly Codec<unknown>[]> = {
  [K in keyof Alts]: { index: K extends `${infer N extends number}` ? N : never; value: Infer<Alts[K]> };
}[number];

export function variant<const Alts extends readonly Codec<unknown>[]>(alts: Alts): Codec<Variant<Alts>> {
  if (alts.length === 0 || alts.length > 255) throw new RangeError('a variant has 1 to 255 alternatives');
  return {
    layout: concat(code(0x86), ...alts.map((a) => a.layout), code(0xff)),
    minSize: 1,
    maxLength: (v) => alts[v?.index]?.maxLength(v.value) ?? 0, // a bad index is refused by write
    write: (w, v) => {
      const alt = alts[v.index];
      if (!alt) throw teError(ErrorCode.INVALID_ARGUMENT, `struct_pack: variant index ${String(v.index)} out of range`);
      w.u8(v.index);
      alt.write(w, v.value);
    },
    read: (r) => {
      const index = r.u8('variant index');
      const alt = alts[index];
      if (!alt) malformed(`variant index ${index} of ${alts.length} alternatives`);
      return { index, value: alt.read(r) } as Variant<Alts>;
    },
  };
}

type Fields = Record<string, Codec<unknown>>;
type StructOf<F extends Fields> = { [K in keyof F]: Infer<F[K]> };

/**
 * A size literal (docs/store-wire.md §2.3): base 127, least significant digit
 * first; each digit but the last stored as digit + 1, the last as digit + 129.
 */
export function sizeLiteral(n: number): Uint8Array {
  const digits: number[] = [];
  let v = n;
  do {
    digits.push(v % 127);
    v = Math.floor(v / 127);
  } while (v > 0);
  return Uint8Array.from(digits.map((d, i) => (i === digits.length - 1 ? d + 129 : d + 1)));
}

/**
 * A struct (or std::pair/tuple) with named fields, in declaration order.
 * `trivial` gives the pack alignment and alignment of a trivially copyable
 * struct (std::pair<uint64_t, uint64_t>: 8, 8): its literal carries them, and
 * its bytes are the C++ object's (our fields have no padding).
 */
export function struct<const F extends Fields>(fields: F, trivial?: { packAlign: number; align: number }): Codec<StructOf<F>> {
  const entries = Object.entries(fields);
  const tail = trivial ? concat(sizeLiteral(trivial.packAlign), sizeLiteral(trivial.align)) : new Uint8Array(0);
  return {
    layout: concat(code(0xfd), ...entries.map(([, c]) => c.layout), tail, code(0xff)),
    minSize: entries.reduce((s, [, c]) => s + c.minSize, 0),
    maxLength: (v) => {
      if (typeof v !== 'object' || v === null) return 0; // refused by write
      let m = 0;
      for (const [k, c] of entries) m = Math.max(m, c.maxLength((v as Record<string, unknown>)[k]));
      return m;
    },
    write: (w, v) => {
      if (typeof v !== 'object' || v === null) throw teError(ErrorCode.INVALID_ARGUMENT, 'struct_pack: a struct must be an object');
      for (const [k, c] of entries) c.write(w, (v as Record<string, unknown>)[k]);
    },
    read: (r) => {
      const out: Record<string, unknown> = {};
      for (const [k, c] of entries) out[k] = c.read(r);
      return out as StructOf<F>;
    },
  };
}

/** An enum: its values on the wire as the underlying integer type. */
export function enumOf<E extends number>(underlying: Codec<number>): Codec<E> {
  return underlying as Codec<E>;
}

/** A tuple of values (the arguments of a call with several parameters): `fd` + each + `ff`. */
export function tuple<const Items extends readonly Codec<unknown>[]>(items: Items): Codec<{ [K in keyof Items]: Infer<Items[K]> }> {
  type T = { [K in keyof Items]: Infer<Items[K]> };
  return {
    layout: concat(code(0xfd), ...items.map((c) => c.layout), code(0xff)),
    minSize: items.reduce((s, c) => s + c.minSize, 0),
    maxLength: (v) => {
      if (!Array.isArray(v)) return 0; // refused by write
      let m = 0;
      items.forEach((c, i) => (m = Math.max(m, c.maxLength((v as readonly unknown[])[i]))));
      return m;
    },
    write: (w, v) => {
      if (!Array.isArray(v) || v.length !== items.length) throw teError(ErrorCode.INVALID_ARGUMENT, `struct_pack: a tuple of ${items.length} must be an array of ${items.length}`);
      items.forEach((c, i) => c.write(w, (v as readonly unknown[])[i]));
    },
    read: (r) => items.map((c) => c.read(r)) as unknown as T,
  };
}

// ------------------------------------------------------------------ messages

/** MD5 of `data`, its first four bytes read big-endian (yalantinglibs' MD5Hash32). */
export function md5Hash32(data: Uint8Array | string): number {
  return createHash('md5').update(data).digest().readUInt32BE(0);
}

const hashes = new WeakMap<Uint8Array, number>();

/** The 31-bit type hash of a layout string (bit 0 clear); computed once per layout object (codecs keep theirs). */
export function typeHash(layout: Uint8Array): number {
  let h = hashes.get(layout);
  if (h === undefined) {
    h = (md5Hash32(layout) & 0xfffffffe) >>> 0;
    hashes.set(layout, h);
  }
  return h;
}

const WIDTH_BITS: Record<LengthWidth, number> = { 1: 0, 2: 1, 4: 2, 8: 3 };
const METAINFO_LAYOUT = 0b100;

function widthFor(n: number): LengthWidth {
  if (n < 2 ** 8) return 1;
  if (n < 2 ** 16) return 2;
  if (n < 2 ** 32) return 4;
  return 8;
}

export interface EncodeOptions {
  /**
   * Write the layout string after the metainfo, as the wheel's C++ does
   * (docs/store-wire.md §2.6): the default, so our messages equal its bytes.
   * Without it (and with 1-byte lengths) no metainfo byte is written.
   */
  layout?: boolean;
  /** Leave this many bytes at the start of the returned buffer (a frame header to fill in): one buffer, no copy. */
  reserve?: number;
}

/** A whole struct_pack message of `value` as `codec` describes it. */
export function encodeMessage<T>(codec: Codec<T>, value: T, options: EncodeOptions = {}): Buffer {
  const withLayout = options.layout !== false;
  const width = widthFor(codec.maxLength(value));
  const metainfo = (withLayout ? METAINFO_LAYOUT : 0) | (WIDTH_BITS[width] << 3);
  const reserve = options.reserve ?? 0;
  const w = new Writer(width, reserve + 64 + codec.layout.length);
  w.skip(reserve);
  const hash = typeHash(codec.layout);
  w.int(metainfo !== 0 ? hash | 1 : hash, 4);
  if (metainfo !== 0) {
    w.u8(metainfo);
    if (withLayout) {
      w.bytes(codec.layout);
      w.u8(0);
    }
  }
  codec.write(w, value);
  return w.finish();
}

/** `got` is `want` and its terminating 00 (a byte loop: no Buffer objects on the hot path of every request). */
function sameLayout(got: Uint8Array, want: Uint8Array): boolean {
  if (got[want.length] !== 0) return false;
  for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) return false;
  return true;
}

/**
 * Decode a whole message as `codec`: the hash must be the codec's, a layout
 * string (if present) must equal its layout byte for byte, and compatible
 * fields (never in Mooncake's RPC types) are refused. Bytes after the payload
 * are ignored, as the C++ reader does.
 */
export function decodeMessage<T>(codec: Codec<T>, buf: Uint8Array, what = 'message'): T {
  const head = new Reader(buf, 1);
  const hash = head.uint(4, `${what}: type hash`);
  const want = typeHash(codec.layout);
  if (hash >>> 1 !== want >>> 1) {
    malformed(`${what}: type hash 0x${(hash & 0xfffffffe).toString(16).padStart(8, '0')} is not the expected 0x${want.toString(16).padStart(8, '0')} (another type, or another version of the peer)`);
  }
  let width: LengthWidth = 1;
  if (hash & 1) {
    const meta = head.u8(`${what}: metainfo`);
    if (meta & 0b11) malformed(`${what}: compatible fields (metainfo 0x${meta.toString(16)}) are not part of this protocol`);
    if (meta & 0b1110_0000) malformed(`${what}: metainfo 0x${meta.toString(16)} has unknown bits`);
    width = ([1, 2, 4, 8] as const)[(meta >> 3) & 0b11]!;
    if (meta & METAINFO_LAYOUT) {
      const layout = head.bytes(codec.layout.length + 1, `${what}: layout string`);
      if (!sameLayout(layout, codec.layout)) malformed(`${what}: the layout string differs from the expected type's`);
    }
  }
  return codec.read(new Reader(buf, width, head.pos));
}
