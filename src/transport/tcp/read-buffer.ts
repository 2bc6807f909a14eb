/**
 * The bytes read from one TCP data connection and not yet handled: one
 * implementation for both sides of the protocol (a client lane's replies in
 * replies.ts, a server connection's requests in connection.ts).
 *
 * Both sides read through Node's `onread` (zero copy), which asks for the
 * buffer of the next read right after each read. The owner picks it:
 * - `direct(view)`: straight into the destination, when nothing is buffered
 *   and a large payload (a READ reply, a WRITE body) comes next; the kernel
 *   then copies it where it belongs and no byte passes through here;
 * - `first(n)`: only the first `n` bytes of the scratch, to read a header or
 *   status frame alone, so that the large payload behind it can go direct;
 * - `tail()`: the free end of the scratch, from which headers, status frames
 *   and small payloads are parsed and copied out (a memcpy costs less than
 *   one more syscall each);
 * - `spare()`: a separate buffer, for the one read that can still land after
 *   the owner stopped reading (see `spare`).
 */

export class ReadBuffer {
  /** The scratch: bytes[start, end) are read and not yet handled. */
  readonly bytes: Buffer;
  start = 0;
  end = 0;
  /** The destination view handed out for the current read, when it goes direct. */
  private directView: Uint8Array | null = null;
  private readonly overflow: Buffer | null;

  /**
   * @param size the scratch's size
   * @param reserve the least free room a `tail()` gets: with less, the unhandled
   *   bytes are first moved to the front
   * @param spareSize the size of the `spare()` buffer (0: the owner never stops reading)
   */
  constructor(
    size: number,
    private readonly reserve: number,
    spareSize = 0,
  ) {
    this.bytes = Buffer.allocUnsafe(size);
    this.overflow = spareSize > 0 ? Buffer.allocUnsafe(spareSize) : null;
  }

  /** Bytes read and not yet handled. */
  get available(): number {
    return this.end - this.start;
  }

  /**
   * Start choosing the next read's buffer. Returns true when nothing is
   * buffered: the owner may then pick `direct` or `first`; otherwise (or if
   * it picks neither) it returns `tail()`.
   */
  prepare(): boolean {
    this.directView = null;
    if (this.start === this.end) {
      this.start = this.end = 0;
      return true;
    }
    if (this.end > this.bytes.length - this.reserve) this.compact();
    return false;
  }

  /** The next read goes straight into `view` (only after `prepare()` returned true: nothing may be buffered ahead of it). */
  direct(view: Uint8Array): Uint8Array {
    this.directView = view;
    return view;
  }

  /** The next read takes at most `n` bytes (only after `prepare()` returned true). */
  first(n: number): Uint8Array {
    return this.bytes.subarray(0, n);
  }

  /** The next read appends to the buffered bytes. */
  tail(): Uint8Array {
    return this.bytes.subarray(this.end);
  }

  /**
   * The buffer for a read while the owner has stopped reading. Node asks for
   * the next buffer right after the read that made the owner stop, before the
   * stop is lifted, and the scratch may be compacted meanwhile, so that read
   * must not land in a slice of it. Its bytes are appended on arrival; the
   * owner stops only with every complete request before them handled, so they
   * fit once the scratch is compacted.
   */
  spare(): Uint8Array {
    this.directView = null;
    return this.overflow!;
  }

  /**
   * A read of `n` bytes landed in `buf` (the buffer handed out last). Returns
   * true when it went direct: the owner advances its destination by `n`.
   * Otherwise the bytes are now buffered, at the end.
   */
  landed(n: number, buf: Uint8Array): boolean {
    if (buf === this.directView) return true;
    if (buf === this.overflow) {
      if (this.end + n > this.bytes.length) this.compact();
      this.bytes.set(this.overflow.subarray(0, n), this.end);
    }
    this.end += n;
    return false;
  }

  /** Copy up to `max` buffered bytes into `dst` at `at` and consume them; returns how many. */
  copyTo(dst: Uint8Array, at: number, max: number): number {
    const take = Math.min(this.end - this.start, max);
    dst.set(this.bytes.subarray(this.start, this.start + take), at);
    this.start += take;
    return take;
  }

  /** Drop every buffered byte. */
  discard(): void {
    this.start = this.end;
  }

  private compact(): void {
    this.bytes.copyWithin(0, this.start, this.end);
    this.end -= this.start;
    this.start = 0;
  }
}
