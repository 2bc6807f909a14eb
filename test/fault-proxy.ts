/**
 * Fault injection for the tests: a loopback TCP proxy that forwards between an
 * initiator and a target engine, and on command delays, drops, blackholes,
 * resets, cuts or throttles the traffic, globally or per connection.
 *
 * How an engine is made to go through it, without rewriting any byte: a peer
 * is reached at the host its descriptor or rpc_meta names, on the data port
 * its descriptor names (P2P: the host of `host:rpcPort`; central modes:
 * rpc_meta's ip_or_host_name), so the target listens on 127.0.0.1
 * (PEER_LISTEN / listenHost) but publishes PROXY_HOST (127.0.0.2, also
 * loopback on Linux), and the proxies listen on PROXY_HOST with the target's
 * own port numbers. The descriptor's tcp_data_port then names the proxy. P2P
 * names are `127.0.0.2:rpcPort`, so the RPC port is proxied too
 * (proxyPeerPorts does both); the data connections are the ones the modes are
 * meant for.
 *
 *   initiator ──► 127.0.0.2:rpcPort  ─┐ FaultProxy ─► 127.0.0.1:rpcPort  target
 *             ──► 127.0.0.2:dataPort ─┘ FaultProxy ─► 127.0.0.1:dataPort
 *
 * "up" is initiator → target (WRITE payloads, request headers), "down" is
 * target → initiator (status frames, READ payloads).
 */
import { readdirSync } from 'node:fs';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';

export type Direction = 'up' | 'down' | 'both';

export type FaultMode =
  /** Forward everything as it comes. */
  | { kind: 'pass' }
  /** Deliver each chunk `ms` after it arrived (in order). */
  | { kind: 'delay'; ms: number; direction?: Direction }
  /** New connections are accepted and closed at once (FIN); open ones keep passing. */
  | { kind: 'drop' }
  /** Stop forwarding and reading, without closing: the peers see silence (their sends back up). */
  | { kind: 'blackhole' }
  /** Reset (RST) both sides of every open connection, and every new one on accept. */
  | { kind: 'reset' }
  /**
   * Forward `afterBytes` more bytes in `direction` (counted from when the mode
   * is set, or from accept), then end both sides: FIN, or RST with `reset`.
   */
  | { kind: 'cut'; afterBytes: number; direction?: Direction; reset?: boolean }
  /** A slow link or reader: at most `bytesPerSec` per direction, reading no more than that, so the sender backs up. */
  | { kind: 'throttle'; bytesPerSec: number; direction?: Direction };

export interface ProxyStats {
  /** Connections accepted (including dropped and reset ones). */
  accepted: number;
  /** Connections open now. */
  active: number;
  dropped: number;
  resets: number;
  cuts: number;
  /** Connections whose target could not be reached. */
  upstreamFailures: number;
  /** Bytes forwarded initiator → target. */
  bytesUp: number;
  /** Bytes forwarded target → initiator. */
  bytesDown: number;
  /** Most bytes held at once in one direction of one connection (bounded when backpressure works). */
  maxHeld: number;
}

export interface FaultProxyOptions {
  /** Default 127.0.0.1. */
  listenHost?: string;
  /** Default 0 (any free port). */
  listenPort?: number;
  targetHost: string;
  targetPort: number;
  /** Initial mode (default pass). */
  mode?: FaultMode;
}

export const PASS: FaultMode = { kind: 'pass' };

/** The loopback address targets publish so that their peers reach them through proxies. */
export const PROXY_HOST = '127.0.0.2';

/** Bytes held per direction before the proxy stops reading the sender. */
const HIGH_WATER = 256 * 1024;
/** Throttle granularity. */
const TICK_MS = 10;

function applies(dir: 'up' | 'down', d: Direction | undefined): boolean {
  return d === undefined || d === 'both' || d === dir;
}

/** One direction of a connection: holds what was read until the mode lets it go. */
class Pipe {
  private queue: Array<{ chunk: Buffer; due: number }> = [];
  private queued = 0;
  private timer: NodeJS.Timeout | null = null;
  private dstBlocked = false;
  private ended = false;
  /** Bytes forwarded since the mode was (re)set: for cut. */
  sinceMode = 0;
  private tokens = 0;
  private lastRefill = performance.now();

  constructor(
    private readonly conn: ProxyConnection,
    readonly dir: 'up' | 'down',
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
  ) {
    src.on('data', (chunk: Buffer) => {
      const m = conn.mode;
      const delay = m.kind === 'delay' && applies(dir, m.direction) ? m.ms : 0;
      this.queue.push({ chunk, due: performance.now() + delay });
      this.queued += chunk.length;
      conn.noteHeld(this.queued);
      this.flush();
    });
    src.on('end', () => {
      this.ended = true;
      this.flush();
    });
    dst.on('drain', () => {
      this.dstBlocked = false;
      this.flush();
    });
  }

  modeChanged(): void {
    this.sinceMode = 0;
    this.tokens = 0;
    this.lastRefill = performance.now();
    this.flush();
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.conn.dead || !this.conn.upstreamReady) return;
    if (this.dst.destroyed) {
      // Nobody to deliver to: drop what comes, and keep reading so that the sender's FIN is seen.
      this.queue = [];
      this.queued = 0;
      this.src.resume();
      return;
    }
    const m = this.conn.mode;
    const mine = 'direction' in m ? applies(this.dir, m.direction) : true;
    while (this.queue.length > 0 && !this.dstBlocked) {
      const head = this.queue[0]!;
      if (m.kind === 'blackhole') break;
      const now = performance.now();
      if (head.due > now) {
        this.arm(head.due - now);
        break;
      }
      let n = head.chunk.length;
      if (m.kind === 'throttle' && mine) {
        this.tokens = Math.min(m.bytesPerSec * (TICK_MS / 1000) * 2, this.tokens + ((now - this.lastRefill) * m.bytesPerSec) / 1000);
        this.lastRefill = now;
        if (this.tokens < 1) {
          this.arm(TICK_MS);
          break;
        }
        n = Math.min(n, Math.floor(this.tokens));
        this.tokens -= n;
      }
      if (m.kind === 'cut' && mine) n = Math.min(n, m.afterBytes - this.sinceMode);
      if (n > 0) {
        const part = n === head.chunk.length ? head.chunk : head.chunk.subarray(0, n);
        if (!this.dst.write(part)) this.dstBlocked = true;
        this.sinceMode += n;
        this.queued -= n;
        this.conn.counted(this.dir, n);
        if (n === head.chunk.length) this.queue.shift();
        else head.chunk = head.chunk.subarray(n);
      }
      if (m.kind === 'cut' && mine && this.sinceMode >= m.afterBytes) {
        this.conn.cut(m.reset === true);
        return;
      }
    }
    if (this.queue.length === 0 && this.ended && m.kind !== 'blackhole') {
      this.dst.end();
      return;
    }
    // Stop reading when holding enough, when blackholed, or while the receiver is slow: the sender backs up.
    const hold = m.kind === 'blackhole' || this.dstBlocked || this.queued >= HIGH_WATER || (m.kind === 'throttle' && mine && this.queued > 0);
    if (hold) this.src.pause();
    else this.src.resume();
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => this.flush(), Math.max(1, Math.ceil(ms)));
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.queue = [];
    this.queued = 0;
  }
}

/** One proxied connection: the initiator's socket and ours to the target. */
export class ProxyConnection {
  private static nextId = 1;
  readonly id = ProxyConnection.nextId++;
  readonly upstream: net.Socket;
  bytesUp = 0;
  bytesDown = 0;
  dead = false;
  upstreamReady = false;
  private own: FaultMode | null = null;
  private readonly up: Pipe;
  private readonly down: Pipe;
  /** Resolves once both sockets are closed. */
  readonly closed: Promise<void>;

  constructor(
    private readonly proxy: FaultProxy,
    readonly client: net.Socket,
  ) {
    client.pause();
    this.upstream = net.connect({ host: proxy.targetHost, port: proxy.targetPort, noDelay: true });
    this.upstream.pause();
    client.setNoDelay(true);
    this.up = new Pipe(this, 'up', client, this.upstream);
    this.down = new Pipe(this, 'down', this.upstream, client);
    const closedBoth = [client, this.upstream].map((s) => new Promise<void>((r) => s.once('close', () => r())));
    this.closed = Promise.all(closedBoth).then(() => undefined);
    this.upstream.once('connect', () => {
      this.upstreamReady = true;
      this.up.flush();
      this.down.flush();
    });
    this.upstream.on('error', (e: NodeJS.ErrnoException) => {
      if (!this.upstreamReady) {
        proxy.stats.upstreamFailures++;
        // As close to "connection refused" as a proxy that already accepted can get.
        if (e.code === 'ECONNREFUSED') this.reset();
      }
    });
    client.on('error', () => {
      // An RST from the initiator: the close handler tears the other side down.
    });
    // One side gone: the other goes too (after what it sent is forwarded, if it closed cleanly).
    client.once('close', (hadError) => this.sideClosed(this.upstream, this.down, hadError));
    this.upstream.once('close', (hadError) => this.sideClosed(client, this.up, hadError));
    void this.closed.then(() => proxy.forget(this));
  }

  /** One side closed: `other` goes too, at once (error, blackhole) or once what it sent and was sent to it is through. */
  private sideClosed(other: net.Socket, into: Pipe, hadError: boolean): void {
    if (hadError || this.mode.kind === 'blackhole' || !this.upstreamReady) {
      this.dead = true;
      this.up.stop();
      this.down.stop();
      other.destroy();
      return;
    }
    // The pipe towards the closed side now discards (and sees `other`'s FIN); the 'end' the
    // closed side sent reached the other pipe, which ends `other` once its queue is flushed.
    into.flush();
  }

  /** This connection's mode: its own if set, else the proxy's. */
  get mode(): FaultMode {
    return this.own ?? this.proxy.mode;
  }

  /** Give this connection a mode of its own (null: follow the proxy's again). */
  setMode(mode: FaultMode | null): void {
    this.own = mode;
    this.applyMode();
  }

  /** @internal a connection following the proxy's mode keeps `mode` as its own (nothing else changes). */
  keepMode(mode: FaultMode): void {
    this.own ??= mode;
  }

  /** @internal the effective mode changed. */
  applyMode(): void {
    if (this.dead) return;
    if (this.mode.kind === 'reset') {
      this.reset();
      return;
    }
    this.up.modeChanged();
    this.down.modeChanged();
  }

  /** @internal */
  noteHeld(n: number): void {
    if (n > this.proxy.stats.maxHeld) this.proxy.stats.maxHeld = n;
  }

  /** @internal bytes went through. */
  counted(dir: 'up' | 'down', n: number): void {
    if (dir === 'up') {
      this.bytesUp += n;
      this.proxy.stats.bytesUp += n;
    } else {
      this.bytesDown += n;
      this.proxy.stats.bytesDown += n;
    }
  }

  /** RST both sides now. */
  reset(): void {
    if (this.dead) return;
    this.kill();
    this.proxy.stats.resets++;
    resetSocket(this.client);
    resetSocket(this.upstream);
  }

  /** @internal end both sides in the middle of whatever was flowing. */
  cut(rst: boolean): void {
    if (this.dead) return;
    this.kill();
    this.proxy.stats.cuts++;
    if (rst) {
      resetSocket(this.client);
      resetSocket(this.upstream);
    } else {
      this.client.destroy();
      this.upstream.destroy();
    }
  }

  /** Close both sides (FIN), dropping whatever is held. */
  destroy(): void {
    this.kill();
    this.client.destroy();
    this.upstream.destroy();
  }

  private kill(): void {
    this.dead = true;
    this.up.stop();
    this.down.stop();
  }
}

/** RST if the socket is connected; a plain destroy otherwise (resetAndDestroy throws on some states). */
function resetSocket(s: net.Socket): void {
  if (s.destroyed) return;
  try {
    if (s.readyState === 'open' || s.readyState === 'readOnly' || s.readyState === 'writeOnly') s.resetAndDestroy();
    else s.destroy();
  } catch {
    s.destroy();
  }
}

export class FaultProxy {
  readonly stats: ProxyStats = { accepted: 0, active: 0, dropped: 0, resets: 0, cuts: 0, upstreamFailures: 0, bytesUp: 0, bytesDown: 0, maxHeld: 0 };
  private readonly open = new Set<ProxyConnection>();
  private readonly listeners = new Set<(c: ProxyConnection) => void>();
  private current: FaultMode;
  targetHost: string;
  targetPort: number;
  host = '';
  port = 0;
  private stopped = false;

  private constructor(
    private readonly server: net.Server,
    opts: FaultProxyOptions,
  ) {
    this.targetHost = opts.targetHost;
    this.targetPort = opts.targetPort;
    this.current = opts.mode ?? PASS;
  }

  /** Listen and forward to the target. */
  static async start(opts: FaultProxyOptions): Promise<FaultProxy> {
    const server = net.createServer({ pauseOnConnect: true, noDelay: true });
    const proxy = new FaultProxy(server, opts);
    server.on('connection', (s) => proxy.accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: opts.listenHost ?? '127.0.0.1', port: opts.listenPort ?? 0 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const a = server.address() as net.AddressInfo;
    proxy.host = a.address;
    proxy.port = a.port;
    return proxy;
  }

  get mode(): FaultMode {
    return this.current;
  }

  /**
   * Switch the mode. By default every open connection follows (those with a
   * mode of their own keep it); with `newOnly` open connections keep the mode
   * they had, and only connections accepted from now on get this one.
   */
  setMode(mode: FaultMode, opts: { newOnly?: boolean } = {}): void {
    const old = this.current;
    if (opts.newOnly) for (const c of this.open) c.keepMode(old);
    this.current = mode;
    if (!opts.newOnly) for (const c of this.open) c.applyMode();
  }

  /** Forward new connections elsewhere (a target restarted on another port). */
  retarget(host: string, port: number): void {
    this.targetHost = host;
    this.targetPort = port;
  }

  /** Open connections, oldest first. */
  get connections(): ProxyConnection[] {
    return [...this.open];
  }

  /** Call `cb` for each connection accepted from now on (dropped and reset ones included). Returns an unsubscribe. */
  onConnection(cb: (c: ProxyConnection) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** Resolves once `n` connections in all have been accepted. */
  async waitAccepted(n: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.stats.accepted < n) {
      if (Date.now() > deadline) throw new Error(`proxy :${this.port}: ${this.stats.accepted} of ${n} connections after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Reset every open connection now (whatever the mode). */
  resetAll(): void {
    for (const c of this.open) c.reset();
  }

  private accept(sock: net.Socket): void {
    this.stats.accepted++;
    if (this.stopped) {
      sock.destroy();
      return;
    }
    const m = this.current;
    if (m.kind === 'drop') {
      this.stats.dropped++;
      sock.on('error', () => {});
      sock.destroy();
      return;
    }
    if (m.kind === 'reset') {
      this.stats.resets++;
      sock.on('error', () => {});
      resetSocket(sock);
      return;
    }
    const c = new ProxyConnection(this, sock);
    this.open.add(c);
    this.stats.active = this.open.size;
    for (const cb of this.listeners) cb(c);
  }

  /** @internal */
  forget(c: ProxyConnection): void {
    this.open.delete(c);
    this.stats.active = this.open.size;
  }

  /** Stop listening and close every connection; resolves once all sockets are closed. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const closing = new Promise<void>((r) => this.server.close(() => r()));
    const conns = [...this.open];
    for (const c of conns) c.destroy();
    await Promise.all([closing, ...conns.map((c) => c.closed)]);
  }
}

export interface PeerPorts {
  rpcPort: number;
  dataPort: number;
}

/** A target's RPC and data ports, both proxied (see the top of this file). */
export class PeerProxy {
  constructor(
    readonly rpc: FaultProxy,
    readonly data: FaultProxy,
  ) {}

  /** Mode of the data port's proxy (the RPC port's keeps passing). */
  setMode(mode: FaultMode, opts?: { newOnly?: boolean }): void {
    this.data.setMode(mode, opts);
  }

  async stop(): Promise<void> {
    await Promise.all([this.rpc.stop(), this.data.stop()]);
  }
}

/**
 * Proxy a target that listens on `backHost` (default 127.0.0.1) and publishes
 * `frontHost` (default PROXY_HOST): each proxy listens on frontHost with the
 * target's own port number.
 */
export async function proxyPeerPorts(ports: PeerPorts, opts: { frontHost?: string; backHost?: string; mode?: FaultMode } = {}): Promise<PeerProxy> {
  const front = opts.frontHost ?? PROXY_HOST;
  const back = opts.backHost ?? '127.0.0.1';
  const rpc = await FaultProxy.start({ listenHost: front, listenPort: ports.rpcPort, targetHost: back, targetPort: ports.rpcPort });
  try {
    const data = await FaultProxy.start({ listenHost: front, listenPort: ports.dataPort, targetHost: back, targetPort: ports.dataPort, ...(opts.mode ? { mode: opts.mode } : {}) });
    return new PeerProxy(rpc, data);
  } catch (e) {
    await rpc.stop();
    throw e;
  }
}

// ------------------------------------------------------------ leak checks

/** What a process holds, for before/after comparisons around a fault. */
export interface ResourceSnapshot {
  /** process.getActiveResourcesInfo() by kind (TCPSocketWrap, TCPServerWrap, Timeout, ...): ref'd handles only. */
  handles: Record<string, number>;
  heapUsed: number;
  external: number;
  rss: number;
  /** Names in /dev/shm. */
  shm: string[];
}

let gcFn: (() => void) | null = null;

/** A full GC (exposed at run time: the tests run without --expose-gc). */
export function collectGarbage(): void {
  if (!gcFn) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  gcFn();
}

export function resourceSnapshot(): ResourceSnapshot {
  collectGarbage();
  const handles: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) handles[r] = (handles[r] ?? 0) + 1;
  const mu = process.memoryUsage();
  let shm: string[] = [];
  try {
    shm = readdirSync('/dev/shm');
  } catch {
    // no /dev/shm: nothing to leak there
  }
  return { handles, heapUsed: mu.heapUsed, external: mu.external, rss: mu.rss, shm };
}

/**
 * Wait (up to `timeoutMs`) until this process holds no more sockets, servers
 * and timers than in `before`, no new /dev/shm file, and heap + external
 * memory within `maxGrowth` bytes of before; else throw, naming what leaked.
 */
export async function expectNoLeaks(before: ResourceSnapshot, label: string, opts: { timeoutMs?: number; maxGrowth?: number } = {}): Promise<ResourceSnapshot> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  const maxGrowth = opts.maxGrowth ?? 64 * 1024 * 1024;
  for (;;) {
    const now = resourceSnapshot();
    const problems: string[] = [];
    for (const [kind, n] of Object.entries(now.handles)) {
      if (kind === 'FSReqCallback' || kind === 'PipeWrap' || kind === 'ProcessWrap' || kind === 'TTYWrap') continue; // IPC with peers, stdio
      if (n > (before.handles[kind] ?? 0)) problems.push(`${kind} ${before.handles[kind] ?? 0} -> ${n}`);
    }
    const fresh = now.shm.filter((f) => !before.shm.includes(f));
    if (fresh.length > 0) problems.push(`new /dev/shm files ${fresh.join(', ')}`);
    const growth = now.heapUsed + now.external - before.heapUsed - before.external;
    if (growth > maxGrowth) problems.push(`heap+external grew by ${(growth / 1048576).toFixed(1)} MiB`);
    if (problems.length === 0) return now;
    if (Date.now() > deadline) throw new Error(`${label}: leaked ${problems.join('; ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
