/** Raw-socket helpers of the security suites (test/security-*.test.ts). */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export const READ = 0x00;
export const WRITE = 0x01;
export const V2 = 0x80;

/** A 24-byte request header of the data port. */
export function header(size: number, addr: number | bigint, opcode: number): Buffer {
  const h = Buffer.alloc(24);
  h.writeBigUInt64LE(BigInt(size), 0);
  h.writeBigUInt64LE(BigInt(addr), 8);
  h[16] = opcode;
  return h;
}

/** A raw client that records what it receives and when the server closes. */
export class RawConn {
  private chunks: Buffer[] = [];
  private wakers: Array<() => void> = [];
  have = 0;
  closed = false;
  closedAt = 0;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.have += c.length;
      this.wake();
    });
    sock.on('error', () => {
      /* resets are expected; 'close' follows */
    });
    sock.on('close', () => {
      this.closed = true;
      this.closedAt = performance.now();
      this.wake();
    });
  }

  static open(port: number, host = '127.0.0.1'): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port, noDelay: true });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new RawConn(s));
      });
      s.once('error', reject);
    });
  }

  get bytes(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  write(b: Buffer): void {
    this.sock.write(b);
  }

  private wake(): void {
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  /** Resolves at the next event (data or close) or after `ms`; the timer never outlives the wait. */
  private event(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, Math.max(1, ms));
      this.wakers.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** Wait until `n` bytes have arrived, or the connection closed, or `ms` passed. */
  async waitBytes(n: number, ms = 5000): Promise<Buffer> {
    const end = performance.now() + ms;
    while (this.have < n && !this.closed && performance.now() < end) await this.event(end - performance.now());
    return this.bytes;
  }

  /** Wait until the server closes the connection (true) or `ms` passes (false). */
  async waitClosed(ms = 5000): Promise<boolean> {
    const end = performance.now() + ms;
    while (!this.closed && performance.now() < end) await this.event(end - performance.now());
    return this.closed;
  }

  destroy(): void {
    this.sock.destroy();
  }
}

/** Whether a TCP connect to host:port succeeds ('connected') or is refused ('refused'). */
export function tryConnect(host: string, port: number, ms = 3000): Promise<'connected' | 'refused' | 'timeout'> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const t = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, ms);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve('connected');
    });
    s.once('error', () => {
      clearTimeout(t);
      resolve('refused');
    });
  });
}

/** Poll `cond` every 10 ms until it holds or `ms` passes; returns its last value. */
export async function waitFor(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) return false;
    await sleep(10);
  }
  return true;
}
