/**
 * A coro_rpc client: one TCP connection to a server (Mooncake Store's
 * master), many calls pipelined on it, each reply matched to its call by the
 * sequence number. The connection opens at the first call and again at the
 * first call after it broke; every call has a deadline; a broken connection
 * fails every call on it at once, with a typed error.
 */
import net from 'node:net';
import tls from 'node:tls';
import { tlsClientOptions, tlsError, tlsHandshakeEndedError, type TlsSettings } from '../tls.js';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import { encodeCall, decodeRpcError, ResponseDecoder, RpcErrc, type ResponseFrame } from './codec/coro-rpc.js';
import { decodeMessage } from './codec/struct-pack.js';
import { NO_ARGS, type Method } from './master-protocol.js';

export interface RpcClientOptions {
  host: string;
  port: number;
  /** Connect deadline (Mooncake: MC_RPC_CONNECT_TIMEOUT_MS, 30 s). */
  connectTimeoutMs: number;
  /** Per-call deadline (Mooncake: MC_RPC_TIMEOUT_MS, 30 s). */
  callTimeoutMs: number;
  /** Largest reply accepted (a larger length is a protocol error before it is buffered). */
  maxFrame?: number;
  /**
   * Where to connect, asked before every (re)connect: a master found through
   * HA (the leader's address in etcd) moves when the leader changes. Without
   * it, host and port.
   */
  resolve?: () => Promise<{ host: string; port: number }>;
  /** Mutual TLS (src/tls.ts), for a master started with TE_TLS_*; the connect deadline covers the handshake. */
  tls?: TlsSettings | undefined;
}

/** An RPC-layer failure the server reported (err_code != 0): the request itself was refused. */
export class RpcError extends TransferEngineError {
  constructor(
    readonly rpcCode: number,
    message: string,
  ) {
    super(ErrorCode.PROTOCOL_ERROR, message);
  }
}

interface Pending {
  resolve(frame: ResponseFrame): void;
  reject(e: TransferEngineError): void;
  timer: NodeJS.Timeout;
}

const DEFAULT_MAX_FRAME = 256 << 20;

export class RpcClient {
  private sock: net.Socket | null = null;
  private connecting: Promise<net.Socket> | null = null;
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private closed = false;
  /** The server connected to (or to connect to): options.host/port, or what resolve() said last. */
  private target: { host: string; port: number };

  constructor(readonly options: RpcClientOptions) {
    this.target = { host: options.host, port: options.port };
  }

  get label(): string {
    return `${this.target.host}:${this.target.port}`;
  }

  /** Call `method` with `args`; resolves with its decoded result. */
  async call<A, R>(method: Method<A, R>, args: A): Promise<R> {
    const codec = method.args === NO_ARGS ? null : method.args;
    const frame = await this.roundTrip(method.name, (seq) => encodeCall(seq, method.id, codec, args));
    if (frame.errCode !== RpcErrc.OK) {
      const { code, message } = decodeRpcError(frame);
      throw new RpcError(code, `${this.label} refused ${method.name}: coro_rpc error ${code} (${message})`);
    }
    return decodeMessage(method.result, frame.body, `${method.name} reply from ${this.label}`);
  }

  /** Send the frame `encode` makes for the next seq (header and body in one buffer) and wait for its reply. */
  private async roundTrip(name: string, encode: (seq: number) => Buffer): Promise<ResponseFrame> {
    if (this.closed) throw teError(ErrorCode.CLOSED, `the connection to ${this.label} is closed`);
    const sock = await this.connect();
    const seq = this.seq;
    this.seq = (this.seq + 1) >>> 0;
    return new Promise<ResponseFrame>((resolve, reject) => {
      let request: Buffer;
      try {
        request = encode(seq); // arguments that do not encode fail here, before anything is pending
      } catch (e) {
        reject(e);
        return;
      }
      const timer = setTimeout(() => {
        if (!this.pending.delete(seq)) return;
        // The reply may still come: the connection is dropped, since what it carries is out of step with us.
        reject(teError(ErrorCode.TIMEOUT, `${name} to ${this.label}: no reply within ${this.options.callTimeoutMs} ms`));
        this.drop(teError(ErrorCode.TIMEOUT, `a call to ${this.label} timed out, so its connection was dropped`));
      }, this.options.callTimeoutMs);
      this.pending.set(seq, { resolve, reject, timer });
      sock.write(request);
    });
  }

  private connect(): Promise<net.Socket> {
    if (this.sock) return Promise.resolve(this.sock);
    const resolver = this.options.resolve;
    this.connecting ??= resolver
      ? resolver().then(
          (t) => {
            this.target = t;
            return this.open();
          },
          (e: unknown) => {
            this.connecting = null;
            throw e instanceof TransferEngineError ? e : teError(ErrorCode.PEER_UNREACHABLE, `cannot find the master: ${String(e)}`, e);
          },
        )
      : this.open();
    return this.connecting;
  }

  private open(): Promise<net.Socket> {
    return new Promise<net.Socket>((resolve, reject) => {
      const { connectTimeoutMs } = this.options;
      const { host, port } = this.target;
      const family = net.isIP(host) === 0 ? { family: 4 } : {};
      const settings = this.options.tls;
      const sock: net.Socket = settings ? tls.connect({ host, port, ...family, ...tlsClientOptions(settings) }) : net.connect({ host, port, noDelay: true, ...family });
      if (settings) sock.setNoDelay(true);
      let tcpUp = false;
      const decoder = new ResponseDecoder({ maxFrame: this.options.maxFrame ?? DEFAULT_MAX_FRAME });
      const timer = setTimeout(() => {
        sock.destroy();
        fail(
          settings && tcpUp
            ? tlsHandshakeEndedError(this.label, `was silent for ${connectTimeoutMs} ms`)
            : teError(ErrorCode.PEER_UNREACHABLE, `connecting to ${this.label} timed out after ${connectTimeoutMs} ms`),
        );
      }, connectTimeoutMs);
      const fail = (e: TransferEngineError): void => {
        clearTimeout(timer);
        this.connecting = null;
        reject(e);
      };
      if (settings) sock.once('connect', () => (tcpUp = true));
      sock.once(settings ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        this.connecting = null;
        if (this.closed) {
          sock.destroy();
          reject(teError(ErrorCode.CLOSED, `the connection to ${this.label} is closed`));
          return;
        }
        this.sock = sock;
        resolve(sock);
      });
      sock.on('data', (chunk: Buffer) => {
        let frames: ResponseFrame[];
        try {
          frames = decoder.push(chunk);
        } catch (e) {
          this.drop(e instanceof TransferEngineError ? e : teError(ErrorCode.PROTOCOL_ERROR, String(e)), sock);
          return;
        }
        for (const f of frames) {
          const p = this.pending.get(f.seq);
          if (!p) {
            // Not a call of ours (or one that timed out): the stream cannot be trusted any more (coro_rpc's client does the same).
            this.drop(teError(ErrorCode.PROTOCOL_ERROR, `${this.label} answered sequence number ${f.seq}, which no call is waiting for`), sock);
            return;
          }
          this.pending.delete(f.seq);
          clearTimeout(p.timer);
          p.resolve(f);
        }
      });
      sock.on('error', (e: NodeJS.ErrnoException) => {
        const err =
          (settings && tlsError(this.label, e)) ||
          (settings && tcpUp && this.sock !== sock ? tlsHandshakeEndedError(this.label, `failed (${e.code ?? e.message})`) : null) ||
          teError(ErrorCode.PEER_UNREACHABLE, `connection to ${this.label} failed: ${e.code ?? e.message}`, e);
        if (this.sock === sock) this.drop(err, sock);
        else fail(err);
      });
      sock.on('close', () => {
        if (this.sock === sock) this.drop(teError(ErrorCode.PEER_UNREACHABLE, `${this.label} closed the connection`), sock);
        else fail(settings && tcpUp ? tlsHandshakeEndedError(this.label, 'closed the connection') : teError(ErrorCode.PEER_UNREACHABLE, `${this.label} closed the connection while connecting`));
      });
    });
  }

  /** Forget the connection (the next call opens a new one) and fail every call waiting on it. */
  private drop(err: TransferEngineError, sock: net.Socket | null = this.sock): void {
    if (sock && this.sock !== sock) return;
    this.sock = null;
    sock?.destroy();
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  /** Calls waiting for a reply. */
  get inFlight(): number {
    return this.pending.size;
  }

  close(): void {
    this.closed = true;
    this.drop(teError(ErrorCode.CLOSED, `the connection to ${this.label} was closed`));
  }
}
