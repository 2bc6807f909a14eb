/**
 * Memory the user registers for the zero-copy calls (putFrom, getInto and
 * their batch forms; Python's register_buffer): registered with the store's
 * engine, and remembered here so that close() can leave an engine that is not
 * ours as it found it (Lifecycle's teardown, through HeldBuffers).
 */
import { ErrorCode, teError } from '../errors.js';
import { viewOf } from './args.js';
import type { CallRecorder } from './calls.js';
import type { HeldBuffers, Lifecycle } from './lifecycle.js';
import { StoreErrorCode } from './master-protocol.js';
import { parseSize } from './sizes.js';

export class RegisteredBuffers implements HeldBuffers {
  /** User memory registered with registerBuffer: address -> length. */
  private readonly registered = new Map<number, number>();

  constructor(
    private readonly life: Lifecycle,
    private readonly calls: CallRecorder,
  ) {}

  /** registerBuffer: 0 or a negative code. */
  register(memory: Uint8Array | ArrayBuffer, size?: number): number {
    try {
      const { engine } = this.life.ready();
      const view = viewOf(memory, 'registerBuffer(): memory');
      const n = size === undefined ? view.length : parseSize(size, 'size');
      if (n <= 0 || n > view.length) throw teError(ErrorCode.INVALID_ARGUMENT, `size ${n} is not in [1, ${view.length}]`);
      const addr = engine.registerLocalMemory(view.subarray(0, n), '*', 'none');
      this.registered.set(addr, n);
      return StoreErrorCode.OK;
    } catch (e) {
      return this.calls.fail('registerBuffer', e);
    }
  }

  /** getBufferAddress: the address of registered memory's first byte, or 0. */
  addressOf(memory: Uint8Array | ArrayBuffer): number {
    const view = viewOf(memory, 'getBufferAddress(): memory');
    return this.life.isReady ? this.life.engine!.addressOf(view) : 0;
  }

  /** unregisterBuffer (by its address or the memory): 0 or a negative code. */
  unregister(memory: number | Uint8Array | ArrayBuffer): number {
    try {
      const { engine } = this.life.ready();
      const addr = typeof memory === 'number' ? memory : this.addressOf(memory);
      if (!this.registered.has(addr)) throw teError(ErrorCode.INVALID_ARGUMENT, `no buffer registered with registerBuffer starts at ${addr}`);
      engine.unregisterLocalMemory(addr);
      this.registered.delete(addr);
      return StoreErrorCode.OK;
    } catch (e) {
      return this.calls.fail('unregisterBuffer', e);
    }
  }

  addresses(): Iterable<number> {
    return this.registered.keys();
  }

  clear(): void {
    this.registered.clear();
  }
}
