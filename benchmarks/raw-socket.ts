/**
 * Baseline: the fastest plain Node socket transfer between two processes on
 * loopback. The parent writes `size`-byte chunks from one buffer (no copies,
 * backpressure respected) for `duration` seconds; a child process receives
 * them with `'data'` events, with `onread` into one reused 1 MiB buffer, or with
 * `onread` walking a 128 MiB region (the engine's footprint), and
 * reports bytes over the time between its first and last byte.
 *
 *   node dist/benchmarks/raw-socket.js <size> <seconds> <data|onread|onread-region>
 * prints one JSON line: {"mode","size","bytes","seconds","GBps"}
 */
import net from 'node:net';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

interface Result {
  mode: string;
  size: number;
  bytes: number;
  seconds: number;
  GBps: number;
}

async function sink(port: number, mode: string): Promise<void> {
  let bytes = 0;
  let first = 0;
  const count = (n: number): void => {
    if (first === 0) first = performance.now();
    bytes += n;
  };
  // 'onread-region': like the engine, land the bytes across a 128 MiB region (cache-cold), not one hot buffer.
  const region = mode === 'onread-region' ? Buffer.alloc(128 << 20) : Buffer.allocUnsafe(1 << 20);
  let at = 0;
  const next = (): Buffer => {
    if (at + (1 << 20) > region.length) at = 0;
    const b = region.subarray(at, at + (1 << 20));
    return b;
  };
  const opts =
    mode === 'data'
      ? { port, host: '127.0.0.1' }
      : { port, host: '127.0.0.1', onread: { buffer: next, callback: (n: number): boolean => ((at += n), count(n), true) } };
  const sock = net.connect(opts as net.NetConnectOpts);
  if (mode === 'data') sock.on('data', (c: Buffer) => count(c.length));
  await new Promise<void>((resolve) => sock.on('end', () => resolve()));
  const seconds = (performance.now() - first) / 1000;
  process.send!({ bytes, seconds });
  sock.destroy();
}

export type RawMode = 'data' | 'onread' | 'onread-region';

export async function rawSocket(size: number, duration: number, mode: RawMode): Promise<Result> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const child = fork(fileURLToPath(import.meta.url), ['--sink', String(port), mode], { stdio: 'inherit' });
  const report = new Promise<{ bytes: number; seconds: number }>((r) => child.once('message', (m) => r(m as { bytes: number; seconds: number })));
  const sock = await new Promise<net.Socket>((r) => server.once('connection', r));
  sock.setNoDelay(true);
  const chunk = Buffer.alloc(size, 1);
  const end = performance.now() + duration * 1000;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (performance.now() < end) if (!sock.write(chunk)) return void sock.once('drain', pump);
      sock.end(() => resolve());
    };
    pump();
  });
  const { bytes, seconds } = await report;
  await new Promise<void>((r) => child.once('exit', () => r()));
  server.close();
  return { mode, size, bytes, seconds, GBps: bytes / seconds / 1e9 };
}

if (process.argv[2] === '--sink') {
  await sink(Number(process.argv[3]), process.argv[4]!);
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [size = '1048576', secs = '3', mode = 'onread'] = process.argv.slice(2);
  console.log(JSON.stringify(await rawSocket(Number(size), Number(secs), mode as RawMode)));
}
