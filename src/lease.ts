/**
 * Pins of registered memory and files: while one is held, unregistering the
 * region or file is refused (TE_REGION_BUSY), so no transfer ever touches
 * memory or a file descriptor that went away under it.
 */

/** What a pin holds: a registered region (src/memory.ts) or file (src/file/registry.ts). */
export interface Pinnable {
  pins: number;
}

/**
 * One pin, owned by whoever holds it: taken when the lease is made, given
 * back by release(), which does nothing the second time (so a teardown and a
 * late completion cannot both give it back). Things that hold exactly one
 * pin for their whole life (a slice, a queued READ, a file operation) are
 * leases themselves: a pin costs no object of its own on the data path.
 */
export class Lease {
  private held = true;

  constructor(readonly pinned: Pinnable) {
    pinned.pins++;
  }

  /** The pin is still held. */
  get holding(): boolean {
    return this.held;
  }

  /** Give the pin back; false (and nothing done) if it was given back already. */
  release(): boolean {
    if (!this.held) return false;
    this.held = false;
    this.pinned.pins--;
    return true;
  }
}
