/** Deterministic byte patterns: both ends can produce and check data without shipping it. */
export function fillPattern(buf: Uint8Array, seed: number): void {
  // xorshift32, 4 bytes per step; fast enough for 64 MiB in tests.
  let x = (seed | 0) || 0x9e3779b9;
  const n = buf.length;
  const words = n >>> 2;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < words; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    dv.setUint32(i * 4, x >>> 0, true);
  }
  for (let i = words * 4; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
}

export function patternBuffer(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  fillPattern(b, seed);
  return b;
}
