/**
 * The store client's local buffer (Mooncake's `local_buffer_size`): registered
 * memory that values are copied through on put and get, carved into
 * first-fit blocks. A request that does not fit now waits (first come, first
 * served) until earlier ones give their blocks back; one larger than the
 * whole buffer is refused at once.
 */
import { teError, ErrorCode } from '../errors.js';

/** Blocks are aligned so that copies start on cache lines. */
const ALIGN = 64;

interface Waiter {
  size: number;
  resolve: (offset: number) => void;
  reject: (e: Error) => void;
}

export class StagingBuffer {
  /** Free ranges [offset, offset + size), sorted by offset, never adjacent (merged). */
  private free: Array<{ offset: number; size: number }>;
  private readonly waiters: Waiter[] = [];
  private closed = false;

  constructor(readonly capacity: number) {
    this.free = capacity > 0 ? [{ offset: 0, size: capacity }] : [];
  }

  /** A block of `size` bytes (rounded up to the alignment): its offset in the buffer. */
  acquire(size: number): Promise<number> {
    const need = Math.max(ALIGN, Math.ceil(size / ALIGN) * ALIGN);
    if (need > this.capacity) {
      return Promise.reject(teError(ErrorCode.INVALID_ARGUMENT, `${size} bytes do not fit in the local buffer of ${this.capacity} bytes (localBufferSize)`));
    }
    if (this.closed) return Promise.reject(teError(ErrorCode.CLOSED, 'the store is closed'));
    if (this.waiters.length === 0) {
      const at = this.take(need);
      if (at >= 0) return Promise.resolve(at);
    }
    return new Promise((resolve, reject) => this.waiters.push({ size: need, resolve, reject }));
  }

  /** Give back the block at `offset` acquired for `size` bytes. */
  release(offset: number, size: number): void {
    const need = Math.max(ALIGN, Math.ceil(size / ALIGN) * ALIGN);
    let i = 0;
    while (i < this.free.length && this.free[i]!.offset < offset) i++;
    this.free.splice(i, 0, { offset, size: need });
    // Merge with the neighbours.
    if (i + 1 < this.free.length && offset + need === this.free[i + 1]!.offset) {
      this.free[i]!.size += this.free[i + 1]!.size;
      this.free.splice(i + 1, 1);
    }
    if (i > 0 && this.free[i - 1]!.offset + this.free[i - 1]!.size === offset) {
      this.free[i - 1]!.size += this.free[i]!.size;
      this.free.splice(i, 1);
    }
    while (this.waiters.length > 0) {
      const at = this.take(this.waiters[0]!.size);
      if (at < 0) break;
      this.waiters.shift()!.resolve(at);
    }
  }

  private take(need: number): number {
    for (let i = 0; i < this.free.length; i++) {
      const f = this.free[i]!;
      if (f.size < need) continue;
      const at = f.offset;
      f.offset += need;
      f.size -= need;
      if (f.size === 0) this.free.splice(i, 1);
      return at;
    }
    return -1;
  }

  /** Bytes free now. */
  get available(): number {
    return this.free.reduce((s, f) => s + f.size, 0);
  }

  /** No more blocks: requests waiting for one fail with TE_CLOSED. */
  close(): void {
    this.closed = true;
    const waiting = this.waiters.splice(0);
    for (const w of waiting) w.reject(teError(ErrorCode.CLOSED, 'the store was closed while the request waited for local buffer space'));
  }
}
