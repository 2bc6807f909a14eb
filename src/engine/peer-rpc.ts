/**
 * Talking to peers' RPC (handshake) ports and to the metadata store about
 * them: where a segment's RPC port is, its descriptor and data host
 * (lookup), one framed exchange (descriptor fetch, notify, probe), and the
 * "is it still you?" check before a stale rpc_meta is replaced. close()
 * aborts every exchange in flight.
 */
import { decodeSegmentDesc, encodeSegmentDesc, type SegmentDesc } from '../codec/descriptor.js';
import { HandshakeType } from '../codec/handshake.js';
import type { EngineConfig } from '../config.js';
import { channels } from '../diagnostics.js';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import { exchange } from '../rpc/handshake.js';
import { parseHostPort, splitHostPort } from '../net.js';
import { DEFAULT_NAME_PORT } from '../metadata/connection.js';
import type { SegmentDirectory } from '../metadata/directory.js';
import type { RpcMeta } from '../metadata/values.js';

/** The longest a handshake reply is awaited after the connect timeout (then MC_TRANSFER_TIMEOUT bounds it too). */
const HANDSHAKE_REPLY_GRACE_MS = 10_000;
/** answersAs: a quick yes/no, not a transfer's patience. */
const ANSWERS_AS_CONNECT_MS = 2000;
const ANSWERS_AS_REPLY_MS = 3000;

export interface PeerRpcContext {
  readonly config: EngineConfig;
  /** This engine's id, for diagnostics events. */
  readonly engineId: number;
  /** The central metadata store's directory; null in P2P mode. */
  directory(): SegmentDirectory | null;
  /** This engine's own descriptor: sent with each Metadata request, as Mooncake does. */
  ownDescriptor(): SegmentDesc;
}

export class PeerRpc {
  /** rpc_meta of peers, looked up for Notify/Probe in central modes. */
  private readonly metaCache = new Map<string, RpcMeta>();
  /** Exchanges in progress: close() aborts them, so they end at once instead of at their timeouts. */
  private readonly exchanges = new Set<AbortController>();
  private closed = false;

  constructor(private readonly ctx: PeerRpcContext) {}

  /**
   * Fetch a segment's descriptor and where its data port is. P2P: ask the peer
   * itself; the data host is the host part of the descriptor's name. Central
   * modes: GET the descriptor and rpc_meta; the data host is rpc_meta's.
   */
  async lookup(name: string): Promise<{ desc: SegmentDesc; host: string }> {
    const { config } = this.ctx;
    const directory = this.ctx.directory();
    let desc: SegmentDesc;
    let host: string;
    if (directory) {
      const found = await directory.fetchSegment(name);
      desc = found.desc;
      host = found.rpcMeta.ipOrHostName;
      this.metaCache.set(desc.name, found.rpcMeta);
    } else {
      desc = await this.fetchDescriptor(name);
      host = splitHostPort(desc.name).host;
    }
    if (desc.protocol !== 'tcp') {
      throw teError(
        ErrorCode.NO_TRANSPORT,
        `segment "${name}" uses protocol "${desc.protocol}", which this host cannot speak; start that peer with MC_FORCE_TCP=1`,
      );
    }
    if (desc.tcpDataPort <= 0) throw teError(ErrorCode.MALFORMED, `segment "${name}" publishes no TCP data port`);
    // With a secret we talk only to peers that authenticate; without one, a peer that requires it cannot be used.
    if (desc.auth !== undefined && !config.authSecret) {
      throw teError(ErrorCode.AUTH_REQUIRED, `segment "${name}" requires authentication (${desc.auth}): give this engine the same shared secret (authSecret option or TE_AUTH_SECRET)`);
    }
    if (desc.auth === undefined && config.authSecret) {
      throw teError(ErrorCode.AUTH_FAILED, `segment "${name}" does not authenticate, and this engine (with a shared secret) talks only to peers that do`);
    }
    // Likewise TLS: an engine with it never talks in clear text, and one without cannot reach a peer that has it.
    if (desc.tls !== undefined && !config.tls) {
      throw teError(ErrorCode.TLS_REQUIRED, `segment "${name}" takes only mutual TLS (${desc.tls}): give this engine a certificate of the same CA (TE_TLS_CERT, TE_TLS_KEY, TE_TLS_CA)`);
    }
    if (desc.tls === undefined && config.tls) {
      throw teError(
        ErrorCode.TLS_FAILED,
        `segment "${name}" does not offer TLS (a Mooncake peer, or one of ours without TE_TLS_*), and this engine (with TE_TLS_*) never falls back to clear text`,
      );
    }
    return { desc, host };
  }

  /** One framed exchange with a segment's RPC port, reported on the handshake diagnostics channel. */
  async exchange(name: string, type: HandshakeType, json: string): Promise<string> {
    if (!channels.handshake.hasSubscribers) return this.exchangeOnce(name, type, json);
    const started = performance.now();
    const kind = type === HandshakeType.NOTIFY ? 'notify' : type === HandshakeType.PROBE ? 'probe' : 'metadata';
    const report = (error?: string): void => {
      const event = { engineId: this.ctx.engineId, segment: name, type: kind, ok: error === undefined, durationMs: performance.now() - started } as const;
      channels.handshake.publish(error === undefined ? event : { ...event, error });
    };
    try {
      const reply = await this.exchangeOnce(name, type, json);
      report();
      return reply;
    } catch (e) {
      report(e instanceof Error ? e.message : String(e));
      throw e;
    }
  }

  /** Central modes: a cached location that fails is looked up again once. */
  private async exchangeOnce(name: string, type: HandshakeType, json: string): Promise<string> {
    const cached = this.ctx.directory() !== null && this.metaCache.has(name);
    const { host, port } = await this.rpcAddress(name);
    try {
      return await this.exchangeWith(host, port, type, json);
    } catch (e) {
      if (!cached || !(e instanceof TransferEngineError) || e.code !== ErrorCode.PEER_UNREACHABLE) throw e;
      const again = await this.rpcAddress(name, true);
      if (again.host === host && again.port === port) throw e;
      return this.exchangeWith(again.host, again.port, type, json);
    }
  }

  /**
   * Is an engine named `name` still serving at this rpc_meta address? Used
   * before replacing a stale rpc_meta key. Nobody answering: no. A descriptor
   * with another name: no (the port was reused). A Mooncake peer in a
   * central mode answers "null" to Metadata: assume it is the owner.
   */
  async answersAs(meta: RpcMeta, name: string): Promise<boolean> {
    const { config } = this.ctx;
    let reply: string;
    try {
      const hello = `${encodeSegmentDesc(this.ctx.ownDescriptor())}\n`;
      reply = await this.abortable((signal) =>
        exchange(meta.ipOrHostName, meta.rpcPort, HandshakeType.METADATA, hello, {
          connectTimeoutMs: Math.min(ANSWERS_AS_CONNECT_MS, config.handshakeConnectTimeoutMs),
          timeoutMs: ANSWERS_AS_REPLY_MS,
          maxFrame: config.handshakeMaxLength,
          signal,
          authSecret: config.authSecret,
          tls: config.tls,
        }),
      );
    } catch {
      return false;
    }
    if (reply.trim() === 'null') return true;
    try {
      return decodeSegmentDesc(reply).name === name;
    } catch {
      return false;
    }
  }

  /** End every exchange in flight, and any started later, at once. */
  close(): void {
    this.closed = true;
    for (const ac of this.exchanges) ac.abort();
    this.exchanges.clear();
  }

  /** Where a segment's RPC port is. P2P: the name itself is `host:port` (12001 when it has no port); central: its rpc_meta. */
  private async rpcAddress(name: string, fresh = false): Promise<{ host: string; port: number }> {
    const directory = this.ctx.directory();
    if (directory) {
      let meta = fresh ? undefined : this.metaCache.get(name);
      if (!meta) {
        meta = await directory.fetchRpcMeta(name);
        this.metaCache.set(name, meta);
      }
      return { host: meta.ipOrHostName, port: meta.rpcPort };
    }
    const { host, port } = parseHostPort(name, 'segment name');
    return { host, port: port ?? DEFAULT_NAME_PORT };
  }

  /**
   * One exchange with an RPC port. The reply is awaited at most
   * MC_TRANSFER_TIMEOUT (and never more than the connect timeout + 10 s): a
   * hung peer fails an open as it fails a transfer.
   */
  private exchangeWith(host: string, port: number, type: HandshakeType, json: string): Promise<string> {
    const { handshakeConnectTimeoutMs: connect, transferTimeoutMs: transfer, handshakeMaxLength, authSecret, tls } = this.ctx.config;
    return this.abortable((signal) =>
      exchange(host, port, type, json, {
        connectTimeoutMs: connect,
        timeoutMs: Math.min(connect + HANDSHAKE_REPLY_GRACE_MS, transfer),
        maxFrame: handshakeMaxLength,
        signal,
        authSecret,
        tls,
      }),
    );
  }

  /**
   * Run an exchange that close() must end at once. Each gets a signal of its
   * own (one listener each), kept in a set: many concurrent exchanges on one
   * shared signal would pile listeners on it (MaxListenersExceededWarning).
   */
  private async abortable<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    if (this.closed) ac.abort();
    this.exchanges.add(ac);
    try {
      return await run(ac.signal);
    } finally {
      this.exchanges.delete(ac);
    }
  }

  private async fetchDescriptor(name: string): Promise<SegmentDesc> {
    const reply = await this.exchange(name, HandshakeType.METADATA, `${encodeSegmentDesc(this.ctx.ownDescriptor())}\n`);
    if (reply.trim() === 'null') {
      throw teError(ErrorCode.INVALID_SEGMENT, `"${name}" serves no P2P metadata (is it in a central metadata mode?)`);
    }
    return decodeSegmentDesc(reply, { maxLength: this.ctx.config.maxDescriptorSize });
  }
}
