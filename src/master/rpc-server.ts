/**
 * A coro_rpc server (docs/store-wire.md §1) over node:net: frames in,
 * handlers by function id, replies in request order. It answers as the
 * wheel's master does where a client can tell: an unknown function id gets
 * errc 11 with Mooncake's message, arguments that do not decode get errc 4
 * ("invalid rpc arg"), both with the connection kept; a bad magic, version
 * or serialize type closes the connection without a reply. Beyond it: frames
 * are bounded, a client that does not read its replies is paused rather than
 * buffered without end, and the number of connections is capped.
 */
import net from 'node:net';
import tls from 'node:tls';
import { clientNameError, tlsServerOptions, type TlsSettings } from '../tls.js';
import { performance } from 'node:perf_hooks';
import { teError, ErrorCode } from '../errors.js';
import { loadNative } from '../native/addon.js';
import { encodeReply, MAGIC, RequestDecoder, RpcErrc, type RequestFrame } from '../store/codec/coro-rpc.js';
import { decodeMessage, string } from '../store/codec/struct-pack.js';
import { NO_ARGS } from '../store/master-protocol.js';
import type { Handler } from './handlers.js';

/** Unread replies held for one connection before we stop reading its requests. */
const MAX_PENDING_REPLY_BYTES = 8 * 1024 * 1024;
/** After a protocol error, how long the replies before it may take to leave before the connection is dropped. */
const CLOSE_GRACE_MS = 5_000;

export interface RpcServerOptions {
  host: string;
  port: number;
  maxFrameBytes: number;
  maxConnections: number;
  /**
   * Asked after the requests of each chunk ran: a promise the replies must
   * wait for (HA: the commit of what they changed, and of everything changed
   * before), or null to send at once. A rejection closes the connection
   * without the replies (they were never durable).
   */
  gate?: () => Promise<void> | null;
  /**
   * The busy-poll window in microseconds (0: always sleep at once). After a
   * request that came within this window of the one before it (from any
   * client), keep polling this long instead of sleeping.
   */
  busyPollUs?: number;
  /** Take only mutual TLS (src/tls.ts): Mooncake's clients, which have none, cannot connect. */
  tls?: TlsSettings | undefined;
}

/** How long an accepted connection may take to finish its TLS handshake. */
const TLS_HANDSHAKE_MS = 10_000;

/** What happened to one request, for metrics: the method name (or "unknown") and the outcome. */
export type RequestObserver = (method: string, outcome: 'ok' | 'app_error' | 'bad_args' | 'unknown_function' | 'exception', errorCode?: number) => void;

/** The longest one native wait of a busy poll blocks the JS thread (timers, other work) when nothing arrives. */
const POLL_SLICE_US = 200;

/** The addon's pollWait when it is built, else null: then a busy poll turns the loop with setImmediate alone. */
function pollWaiter(): ((us: number) => boolean) | null {
  if (waiter === undefined) {
    try {
      const native = loadNative();
      waiter = (us) => native.pollWait(us);
    } catch {
      waiter = null;
    }
  }
  return waiter;
}
let waiter: ((us: number) => boolean) | null | undefined;

export class RpcServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  /** Connections closed for a protocol violation (bad magic, version, serialize type, oversized frame). */
  protocolErrors = 0;
  /** TLS connections refused: a certificate, a client without TLS, TE_TLS_PEER_NAME, or no handshake within TLS_HANDSHAKE_MS. */
  tlsRejected = 0;
  private closing = false;
  /** Until when (performance.now() ms) the event loop keeps polling instead of sleeping: see options.busyPollUs. */
  private pollUntil = 0;
  private polling = false;
  /** When (performance.now() ms) the last chunk with requests arrived, from any connection. */
  private lastArrival = -Infinity;

  private constructor(
    private readonly handlers: ReadonlyMap<number, Handler>,
    private readonly options: RpcServerOptions,
    private readonly observe: RequestObserver,
  ) {
    this.server = net.createServer({ noDelay: true }, (s) => this.accept(s));
    this.server.maxConnections = options.maxConnections;
  }

  static async start(handlers: ReadonlyMap<number, Handler>, options: RpcServerOptions, observe: RequestObserver = () => {}): Promise<RpcServer> {
    const s = new RpcServer(handlers, options, observe);
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          e.code === 'EADDRINUSE'
            ? teError(ErrorCode.PORT_IN_USE, `master RPC port ${options.port} on ${options.host} is already in use (--rpc_port)`, e)
            : teError(ErrorCode.INVALID_ARGUMENT, `master cannot listen on ${options.host}:${options.port}: ${e.message} (--rpc_address, --rpc_port)`, e),
        ),
      );
      s.server.listen({ host: options.host, port: options.port, exclusive: true }, () => resolve());
    });
    const addr = s.server.address();
    s.port = typeof addr === 'object' && addr ? addr.port : options.port;
    return s;
  }

  get connections(): number {
    return this.sockets.size;
  }

  async close(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /**
   * After a request, keep the event loop turning (setImmediate: libuv polls
   * the sockets without blocking) for busyPollUs, so the next request is read
   * without waking a sleeping process: on a VM that wake-up costs more than a
   * small call itself (BENCHMARKS.md, Store master). Only while requests come
   * closer together than the window: polling after a request that followed a
   * longer silence would rarely catch the next one and would burn the core
   * for nothing. So a lone request never spins, a steady client keeps one
   * core polling, and the poll ends one window after the last request.
   */
  /** True while the event loop is kept polling after recent requests (see busyPoll). */
  get pollingNow(): boolean {
    return this.polling;
  }

  private busyPoll(): void {
    const windowMs = (this.options.busyPollUs ?? 0) / 1000;
    if (windowMs <= 0) return;
    const now = performance.now();
    const gap = now - this.lastArrival;
    this.lastArrival = now;
    if (gap > windowMs) return;
    this.pollUntil = now + windowMs;
    if (this.polling) return;
    this.polling = true;
    let wait = pollWaiter();
    const turn = (): void => {
      const left = this.pollUntil - performance.now();
      if (left <= 0 || this.closing) {
        this.polling = false;
        return;
      }
      // Native: spin in C, yielding the CPU, until the loop has events (one turn per event, not one
      // JS object every microsecond); capped so timers are late by at most POLL_SLICE_US.
      if (wait) {
        try {
          wait(Math.min(left * 1000, POLL_SLICE_US));
        } catch {
          waiter = wait = null; // the addon failed: poll by setImmediate alone from now on, never crash the master
        }
      }
      setImmediate(turn);
    };
    setImmediate(turn);
  }

  /** TLS first (options.tls): requests are read only once the handshake is done and the client's certificate passed. */
  private accept(raw: net.Socket): void {
    const settings = this.options.tls;
    if (!settings) {
      this.serve(raw);
      return;
    }
    raw.on('error', () => raw.destroy());
    const sock = new tls.TLSSocket(raw, tlsServerOptions(settings));
    this.sockets.add(sock);
    sock.once('close', () => this.sockets.delete(sock));
    const refuse = (): void => {
      this.tlsRejected++;
      sock.destroy();
    };
    const timer = setTimeout(refuse, TLS_HANDSHAKE_MS); // a client that stalls its handshake holds nothing for long
    timer.unref();
    sock.on('error', refuse);
    sock.once('close', () => clearTimeout(timer));
    sock.once('secure', () => {
      clearTimeout(timer);
      sock.off('error', refuse);
      if (clientNameError(settings, sock)) refuse();
      else this.serve(sock);
    });
  }

  private serve(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.setNoDelay(true); // a reply must leave at once: clients wait for each one (also asked of createServer)
    sock.once('close', () => this.sockets.delete(sock));
    sock.on('error', () => {}); // a reset peer: 'close' follows; nothing to report to anyone
    const decoder = new RequestDecoder({ maxFrame: this.options.maxFrameBytes });
    let first = true;
    let broken = false;
    /** Replies held for a gate, in order; null when none is held (then replies go at once). */
    let held: Promise<void> | null = null;
    // Several replies (pipelined requests) leave in one writev, without copying them into one buffer.
    const write = (replies: Buffer[]): void => {
      if (replies.length === 1) {
        sock.write(replies[0]!);
        return;
      }
      sock.cork();
      for (const r of replies) sock.write(r);
      sock.uncork();
    };
    const send = (replies: Buffer[]): void => {
      const wait = this.options.gate?.() ?? null;
      if (wait === null && held === null) {
        write(replies);
        return;
      }
      const mine = (held ?? Promise.resolve()).then(() => wait).then(() => {
        if (!sock.destroyed) write(replies);
      });
      held = mine;
      mine.then(
        () => {
          if (held === mine) held = null;
        },
        () => sock.destroy(),
      );
    };
    sock.on('data', (chunk: Buffer) => {
      if (broken) return; // closing: what follows a protocol error is never looked at
      // Mooncake checks a connection's first byte as the magic at once, before a whole header is in.
      const { frames, error } = first && chunk[0] !== MAGIC ? { frames: [] as RequestFrame[], error: true } : decoder.pushUntilError(chunk);
      first = false;
      if (frames.length > 0) {
        send(frames.map((f) => this.answer(f)));
        this.busyPoll();
      }
      if (error !== null) {
        // Out of step (bad magic, version, serialize type, or a frame over the limit): close, as Mooncake
        // does, after the replies to the requests before it, however the bytes were segmented.
        broken = true;
        this.protocolErrors++;
        if (held === null && sock.writableLength === 0) {
          sock.destroy();
          return;
        }
        if (held === null) sock.end();
        else held.then(() => sock.end(), () => sock.destroy());
        const t = setTimeout(() => sock.destroy(), CLOSE_GRACE_MS);
        t.unref();
        sock.once('close', () => clearTimeout(t));
        return;
      }
      if (frames.length === 0) return;
      if (sock.writableLength > MAX_PENDING_REPLY_BYTES) {
        sock.pause();
        sock.once('drain', () => sock.resume());
      }
    });
  }

  private answer(frame: RequestFrame): Buffer {
    const h = this.handlers.get(frame.functionId);
    if (!h) {
      this.observe('unknown', 'unknown_function');
      return errorReply(frame.seq, RpcErrc.FUNCTION_NOT_REGISTERED, 'the rpc function not registered');
    }
    const name = h.method.name;
    let args: unknown;
    try {
      args = h.method.args === NO_ARGS ? null : decodeMessage(h.method.args, frame.body, `${name} arguments`);
    } catch {
      this.observe(name, 'bad_args');
      return errorReply(frame.seq, RpcErrc.INVALID_RPC_ARGUMENTS, 'invalid rpc arg');
    }
    let result: unknown;
    try {
      result = h.call(args);
    } catch (e) {
      // A handler bug must not take the master down: the caller gets coro_rpc's "handler threw".
      this.observe(name, 'exception');
      return errorReply(frame.seq, RpcErrc.RPC_THROW_EXCEPTION, e instanceof Error ? e.message : String(e));
    }
    const error = applicationError(result);
    this.observe(name, error === undefined ? 'ok' : 'app_error', error);
    return encodeReply(frame.seq, RpcErrc.OK, h.method.result, result);
  }
}

/** The error code of a failed tl::expected result (a batch's first failure), for metrics. */
function applicationError(result: unknown): number | undefined {
  const one = Array.isArray(result) ? result.find((r) => isFailure(r)) : result;
  return isFailure(one) ? one.error : undefined;
}

function isFailure(r: unknown): r is { ok: false; error: number } {
  return typeof r === 'object' && r !== null && 'ok' in r && r.ok === false && 'error' in r && typeof r.error === 'number';
}

function errorReply(seq: number, errc: number, message: string): Buffer {
  return encodeReply(seq, errc, string, message);
}
