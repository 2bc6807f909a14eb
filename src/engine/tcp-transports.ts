/**
 * The engine's TCP transports, installed and uninstalled by name: the data
 * server (our memory and files to peers) with its client (ours to theirs),
 * and the file transport's own listener when given a trid ("nvmeof_generic"
 * in Mooncake's vocabulary, our TCP file protocol underneath). Hardware
 * transports this host cannot run are refused here.
 */
import type { EngineConfig } from '../config.js';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import { parseTrid } from '../file/config.js';
import type { FileServeContext } from '../file/local-files.js';
import type { MemoryRegistry } from '../memory.js';
import { joinHostPort } from '../net.js';
import { TcpClient } from '../transport/tcp/client.js';
import { TcpDataServer, type DataServerStats } from '../transport/tcp/server.js';
import { TcpTransport } from '../transport/tcp/transport.js';

/** Transports that exist in Mooncake but need hardware this host does not have. */
const UNSUPPORTED_TRANSPORTS = new Set([
  'rdma', 'barex', 'efa', 'cxi', 'ub', 'nccl', 'ascend', 'nvlink', 'nvlink_intra', 'hip', 'maca', 'musa',
  'ubshmem', 'sunrise_link', 'cxl', 'nvmeof',
]);

export interface TcpTransportsContext {
  readonly config: EngineConfig;
  readonly registry: MemoryRegistry;
  readonly files: FileServeContext;
  /** This engine's identity, checked by peers on each data connection. */
  readonly engineId: number;
  /** Where the data port listens (the RPC port's address). */
  readonly listenHost: string;
  /** Source address for data connections carrying memory of a location (EngineOptions.sourceAddress). */
  readonly sourceAddress: ((location: string) => string | undefined) | undefined;
}

export class TcpTransports {
  private dataServer: TcpDataServer | null = null;
  /** The initiator side, for the dispatcher: lives as long as the engine; holds a client while tcp is installed. */
  readonly transport: TcpTransport;
  /** The file transport's own listener (its trid's traddr:trsvcid); null: files use the data port. */
  private fileServer: { server: TcpDataServer; host: string; port: number } | null = null;

  constructor(private readonly ctx: TcpTransportsContext) {
    this.transport = new TcpTransport({ splitSize: ctx.config.splitSize, sourceAddress: ctx.sourceAddress });
  }

  /** Install tcp at init: the data port in [MC_MIN_RPC_PORT, MC_MAX_RPC_PORT], beside the RPC port `rpcPort`. */
  async start(rpcPort: number): Promise<void> {
    await this.installTcp().catch((e: unknown) => {
      if (!(e instanceof TransferEngineError) || e.code !== ErrorCode.PORT_IN_USE) throw e;
      throw teError(ErrorCode.PORT_IN_USE, `the data port: ${e.message} (the RPC port took ${rpcPort}; MC_MIN_RPC_PORT..MC_MAX_RPC_PORT must hold both)`, e);
    });
  }

  /**
   * Install a transport by name; true when what the descriptor publishes changed. 'tcp', and 'file'
   * (alias 'nvmeof_generic'): on the tcp data port, or with a trid on a listener of its own.
   */
  async install(proto: string, args?: string): Promise<boolean> {
    if (proto === 'file' || proto === 'nvmeof_generic') {
      if (args === undefined || args === '') return this.install('tcp');
      const at = parseTrid(args);
      if (this.fileServer) {
        if (this.fileServer.host === at.host && this.fileServer.port === at.port) return false;
        throw teError(ErrorCode.INVALID_ARGUMENT, `the file transport already listens at ${joinHostPort(this.fileServer.host, this.fileServer.port)}; uninstall it first`);
      }
      const server = this.newServer();
      try {
        await server.listen(at.host, at.port, at.port, at.port);
      } catch (e) {
        await server.close();
        throw e;
      }
      this.fileServer = { server, ...at };
      return true; // file_data_port
    }
    if (args !== undefined) throw teError(ErrorCode.INVALID_ARGUMENT, `transport "${proto}" takes no argument`);
    if (proto === 'tcp') {
      if (this.dataServer) return false;
      await this.installTcp();
      return true; // a new data port
    }
    if (UNSUPPORTED_TRANSPORTS.has(proto)) {
      throw teError(ErrorCode.NOT_SUPPORTED, `transport "${proto}" is not supported on this host (no RDMA devices, GPUs or NVMe-oF here)`);
    }
    throw teError(ErrorCode.INVALID_ARGUMENT, `unknown transport "${proto}"`);
  }

  /** Uninstall a transport: its port closes and its in-flight transfers fail. */
  async uninstall(proto: string): Promise<void> {
    if ((proto === 'file' || proto === 'nvmeof_generic') && this.fileServer) {
      const { server } = this.fileServer;
      this.fileServer = null; // file requests go back to the data port
      await server.close();
      return;
    }
    if (proto !== 'tcp') throw teError(ErrorCode.INVALID_ARGUMENT, `transport "${proto}" is not installed${proto === 'file' || proto === 'nvmeof_generic' ? ' with a listener of its own (file requests ride on the tcp data port)' : ''}`);
    const server = this.dataServer;
    this.dataServer = null;
    this.transport.detach();
    await server?.close();
  }

  /** Installed transport names. Files are served wherever a data server runs: the data port, or the file listener. */
  get names(): string[] {
    return [...(this.dataServer ? ['tcp'] : []), ...(this.dataServer || this.fileServer ? ['file'] : [])];
  }

  /** The client peers' data ports are reached with; null while tcp is uninstalled. */
  get client(): TcpClient | null {
    return this.transport.client;
  }

  /** The data port published in the descriptor (0 when tcp is uninstalled). */
  get dataPort(): number {
    return this.dataServer?.port ?? 0;
  }

  /** Where the file listener is, as the descriptor publishes it; undefined without one. */
  fileEndpoint(): { host?: string; port: number } | undefined {
    const s = this.fileServer;
    if (!s) return undefined;
    // A wildcard listener is reached at the segment's own data host.
    return s.host === '0.0.0.0' || s.host === '::' ? { port: s.port } : { host: s.host, port: s.port };
  }

  /** The servers' counters (data port, file listener), the client's lanes and peer pauses. */
  stats(): { data: DataServerStats | undefined; file: DataServerStats | undefined; dataConnections: number; lanes: number; peerPauses: number } {
    return {
      data: this.dataServer?.stats,
      file: this.fileServer?.server.stats,
      dataConnections: this.dataServer?.connectionCount ?? 0,
      ...this.transport.stats(),
    };
  }

  /** Close the client and every listener. */
  async close(): Promise<void> {
    this.transport.detach();
    const servers = [this.dataServer?.close(), this.fileServer?.server.close()];
    this.dataServer = null;
    this.fileServer = null;
    await Promise.all(servers);
  }

  private async installTcp(): Promise<void> {
    const { config, listenHost } = this.ctx;
    const server = this.newServer();
    try {
      await server.listen(listenHost, 0, config.minPort, config.maxPort);
    } catch (e) {
      await server.close();
      throw e;
    }
    this.dataServer = server;
    this.transport.attach(new TcpClient({
      authSecret: config.authSecret,
      tls: config.tls,
      lanesPerPeer: config.lanesPerPeer,
      timeoutMs: config.transferTimeoutMs,
      connectTimeoutMs: Math.min(config.transferTimeoutMs, config.handshakeConnectTimeoutMs),
      peerPauseMs: config.peerPauseMs,
      keepAliveMs: config.keepAliveMs,
    }));
  }

  private newServer(): TcpDataServer {
    const { config, registry, files, engineId } = this.ctx;
    return new TcpDataServer(registry, files, { authSecret: config.authSecret, tls: config.tls, limits: config, engineId });
  }
}
