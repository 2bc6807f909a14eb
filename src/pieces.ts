/**
 * Cutting a request into wire-sized pieces: one rule for every place that
 * does it (the engine cuts a transfer into slices of TE_TCP_SPLIT_SIZE, the
 * client cuts a large slice into wire requests of WIRE_MAX, the file I/O
 * pool cuts an operation into chunks).
 *
 * Pieces are `max` bytes each but the last, which is shorter when `max` does
 * not divide the length; piece k starts at k * max. They are views of the
 * request's bytes, never copies, and a request that fits is its own single
 * piece (the same view). Two functions rather than a list or a callback, so
 * that a caller's loop allocates nothing but the pieces' views.
 */

/** How many pieces of at most `max` bytes `length` bytes make; a request of 0 bytes is still one (empty) piece. */
export function pieceCount(length: number, max: number): number {
  return length <= max ? 1 : Math.ceil(length / max);
}

/** Piece `k` of `bytes` cut into pieces of at most `max` bytes: a view at offset k * max. */
export function pieceAt(bytes: Uint8Array, k: number, max: number): Uint8Array {
  if (bytes.length <= max) return bytes;
  const at = k * max;
  return bytes.subarray(at, Math.min(bytes.length, at + max));
}
