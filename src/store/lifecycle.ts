/**
 * A store client's life: setup (the master connection first, then the
 * transfer engine, made and owned or adopted, the local buffer, and the memory
 * segment this client provides) and its undoing at close or after a failed
 * setup. While the store is ready, the other parts of the store take what
 * they run on from here (ready()) and call the master through it.
 *
 * Memory others hold in the engine (user buffers, mounted files) is kept by
 * their own parts; teardown is handed them, so that each is let go of in the
 * one order that is safe (the engine stops serving before a file is unmapped).
 */
import { tlsSettingsFromEnv } from '../tls.js';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { TransferEngine as CoreEngine } from '../engine/engine.js';
import { ErrorCode, TransferEngineError, teError } from '../errors.js';
import { splitHostPort } from '../net.js';
import { Membership } from './membership.js';
import { StoreErrorCode, type Method, type Segment, type UUID } from './master-protocol.js';
import { RpcClient } from './rpc-client.js';
import { parseSize } from './sizes.js';
import { StagingBuffer } from './staging.js';
import { StoreError, checkVersion } from './store-errors.js';
import { masterLocator, type MasterLocator } from './master-view.js';
import { ReplicaIO } from './replica-io.js';

/** The dictionary form of setup (Python's keys, in camelCase). */
export interface StoreConfig {
  localHostname: string;
  metadataServer: string;
  /** Bytes this client contributes to the store (a number, or "512MB"); 0: none. Default 16 MiB, as Python's. */
  globalSegmentSize?: number | bigint | string;
  /** Bytes of the local buffer values are copied through. Default 16 MiB, as Python's. */
  localBufferSize?: number | bigint | string;
  protocol?: string;
  rdmaDevices?: string;
  /** `host:port` of mooncake_master (default 127.0.0.1:50051). */
  masterServerAddr?: string;
  tenantId?: string;
}

export interface StoreOptions {
  /**
   * An engine to move objects with (Python's `engine=`): a core engine, or
   * the high-level TransferEngine (its getEngine()), initialized, and left
   * open by close(). Default: the store makes and owns one.
   */
  engine?: CoreEngine | { getEngine(): CoreEngine | null };
  /** Where MC_* variables are read (default process.env). */
  env?: Record<string, string | undefined>;
  /**
   * Put this client's segment in shared memory (/dev/shm, its pages committed
   * at setup), so that other engines of ours on this host copy objects into
   * and out of it directly instead of through TCP (README, Shared memory).
   * Needs the native addon; only with a store-made engine. Default false.
   */
  shm?: boolean;
}

export const DEFAULT_SEGMENT = 16 << 20;
export const DEFAULT_MASTER = '127.0.0.1:50051';
/** Mooncake's MC_STORE_CLIENT_MIN_PORT / MAX_PORT: a hostname without a port gets one of these, held for our life. */
const CLIENT_PORT_MIN = 12300;
const CLIENT_PORT_MAX = 14300;
const RPC_TIMEOUT_MS = 30_000;

type State = 'new' | 'setting-up' | 'ready' | 'closed';

/** What a ready store runs on. */
export interface Ready {
  engine: CoreEngine;
  rpc: RpcClient;
  membership: Membership;
  io: ReplicaIO;
}

/** User memory registered with the engine (registerBuffer): unregistered at teardown from an engine not ours, then forgotten. */
export interface HeldBuffers {
  addresses(): Iterable<number>;
  clear(): void;
}

/** Files mounted as segments: released at teardown, once the engine no longer serves them. */
export interface HeldFiles {
  release(engine: CoreEngine | null, ownsEngine: boolean): void;
}

export class Lifecycle {
  private state: State = 'new';
  private core: CoreEngine | null = null;
  private ownsEngine = false;
  private rpcClient: RpcClient | null = null;
  private membership: Membership | null = null;
  private io: ReplicaIO | null = null;
  private segmentHost = '';
  private tenantId = 'default';
  private portHolder: net.Server | null = null;
  private locator: MasterLocator | null = null;
  /** Memory the store registered itself (local buffer, segment): unregistered at close from an engine not ours. */
  private readonly ownMemory: number[] = [];

  constructor(private readonly options: StoreOptions) {}

  get isReady(): boolean {
    return this.state === 'ready';
  }

  /** The core engine moving the objects; null before setup and after close. */
  get engine(): CoreEngine | null {
    return this.core;
  }

  /** The master connection; null before setup and after close. */
  get rpc(): RpcClient | null {
    return this.rpcClient;
  }

  /** The segment name this client mounted under (`host:port`). */
  get hostname(): string {
    return this.segmentHost;
  }

  /** The tenant every object call names (StoreConfig.tenantId). */
  get tenant(): string {
    return this.tenantId;
  }

  ready(): Ready {
    if (this.state === 'ready') return { engine: this.core!, rpc: this.rpcClient!, membership: this.membership!, io: this.io! };
    throw teError(this.state === 'closed' ? ErrorCode.CLOSED : ErrorCode.NOT_INITIALIZED, this.state === 'closed' ? 'the store is closed' : 'call setup() first');
  }

  /** A master call once the store is ready. */
  master<A, R>(method: Method<A, R>, args: A): Promise<R> {
    const { rpc } = this.ready();
    return overRpc(rpc, method.name, () => rpc.call(method, args));
  }

  /** setup: once, from new; a failure undoes what was done, and setup may be tried again. */
  async open(config: StoreConfig, buffers: HeldBuffers, files: HeldFiles): Promise<void> {
    if (this.state !== 'new') throw teError(ErrorCode.ALREADY_INITIALIZED, this.state === 'closed' ? 'the store is closed' : 'setup() may be called once');
    this.state = 'setting-up';
    try {
      await this.start(config);
      this.state = 'ready';
    } catch (e) {
      await this.teardown(false, buffers, files);
      this.state = 'new';
      throw e;
    }
  }

  /** Undo a setup that succeeded, as a failed one: everything undone (what was mounted unmounted), and setup may be tried again. */
  async abort(buffers: HeldBuffers, files: HeldFiles): Promise<void> {
    await this.teardown(true, buffers, files);
    this.state = 'new';
  }

  /** Unmount our segment, stop pinging, close the connection and (if ours) the engine. Idempotent. */
  async close(buffers: HeldBuffers, files: HeldFiles): Promise<void> {
    if (this.state === 'closed') return;
    const wasReady = this.state === 'ready';
    this.state = 'closed';
    await this.teardown(wasReady, buffers, files);
  }

  private async start(config: StoreConfig): Promise<void> {
    const protocol = (config.protocol ?? 'tcp').toLowerCase();
    if (protocol !== 'tcp') throw teError(ErrorCode.NOT_SUPPORTED, `protocol "${protocol}" is not supported on this host (no RDMA or GPU transports): use "tcp"`);
    if (config.localHostname.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'localHostname is empty');
    if (config.metadataServer.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'metadataServer is empty (a URL such as http://host:port/metadata, or P2PHANDSHAKE)');
    const segmentSize = parseSize(config.globalSegmentSize ?? DEFAULT_SEGMENT, 'globalSegmentSize');
    const bufferSize = parseSize(config.localBufferSize ?? DEFAULT_SEGMENT, 'localBufferSize');
    this.tenantId = config.tenantId ?? 'default';
    // host:port, or etcd://... (HA: the leader's address is looked up at every reconnect, so we follow failovers).
    const locator = masterLocator(config.masterServerAddr ?? DEFAULT_MASTER, this.options.env ?? process.env);
    this.locator = locator;
    const first = locator.follows ? { host: locator.label, port: 0 } : await locator.resolve();

    // The master first: a wrong address or version fails before anything is bound.
    const rpc = new RpcClient({
      host: first.host,
      port: first.port,
      connectTimeoutMs: RPC_TIMEOUT_MS,
      callTimeoutMs: RPC_TIMEOUT_MS,
      ...(locator.follows ? { resolve: () => locator.resolve() } : {}),
      // The master's port takes TLS when it was started with TE_TLS_*: the client uses its engine's settings.
      tls: tlsSettingsFromEnv(this.options.env ?? process.env),
    });
    this.rpcClient = rpc;
    await overRpc(rpc, 'ServiceReady', () => checkVersion(rpc));

    // The segment's name (what preferredSegment names): host:port, a port held for our life when none is given.
    this.segmentHost = splitHostPort(config.localHostname).port !== undefined ? config.localHostname : await this.holdPort(config.localHostname);
    if (this.options.engine) {
      const given = this.options.engine;
      const core = given instanceof CoreEngine ? given : given.getEngine();
      if (!core) throw teError(ErrorCode.NOT_INITIALIZED, 'the engine passed in options.engine is not initialized');
      this.core = core;
    } else {
      const env = this.options.env ?? process.env;
      this.core = new CoreEngine({ metadataServer: config.metadataServer, env, ...(this.options.shm ? { shm: true } : {}) });
      this.ownsEngine = true;
      await this.core.init(this.segmentHost, splitHostPort(this.segmentHost).host);
    }
    const engine = this.core;
    // Peers never address the local buffer: it is not published (nor worth shared memory).
    const stagingBase = bufferSize > 0 ? engine.registerLocalMemory(new ArrayBuffer(bufferSize), '*', 'none') : 0;
    if (stagingBase) this.ownMemory.push(stagingBase);
    this.io = new ReplicaIO(engine, bufferSize > 0 ? new StagingBuffer(bufferSize) : null, stagingBase);
    const clientId = randomUuid();
    this.membership = new Membership(rpc, clientId, {
      // A restarted master forgot us; with it, its embedded metadata server may have forgotten our segment.
      remounted: () => {
        try {
          engine.republishMetadata();
        } catch {
          /* closed meanwhile */
        }
      },
      failed: () => {},
    });
    if (segmentSize > 0) {
      const base = engine.allocateLocalMemory(segmentSize);
      this.ownMemory.push(base);
      await engine.flushMetadata(); // peers must find the segment before the master hands it out
      const segment: Segment = {
        id: randomUuid(),
        name: this.segmentHost,
        base: BigInt(base),
        size: BigInt(segmentSize),
        teEndpoint: engine.segmentName,
        protocol,
        hostId: '',
      };
      const membership = this.membership;
      await overRpc(rpc, 'MountSegment', () => membership.mount(segment));
    }
  }

  /**
   * A hostname without a port gets a free one in Mooncake's client range,
   * held by a listener for the store's life, so that two clients on one host
   * never take the same segment name.
   */
  private async holdPort(host: string): Promise<string> {
    const span = CLIENT_PORT_MAX - CLIENT_PORT_MIN + 1;
    const start = Math.floor(Math.random() * span);
    for (let k = 0; k < Math.min(span, 200); k++) {
      const port = CLIENT_PORT_MIN + ((start + k * 7919) % span);
      const server = net.createServer();
      const ok = await new Promise<boolean>((resolve) => {
        server.once('error', () => resolve(false));
        server.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve(true));
      });
      if (ok) {
        server.unref();
        this.portHolder = server;
        return `${host}:${port}`;
      }
    }
    throw teError(ErrorCode.PORT_IN_USE, `no free port in [${CLIENT_PORT_MIN}, ${CLIENT_PORT_MAX}] to name this client's segment: give localHostname as host:port`);
  }

  private async teardown(unmount: boolean, buffers: HeldBuffers, files: HeldFiles): Promise<void> {
    await this.membership?.stop(unmount);
    this.membership = null;
    this.rpcClient?.close();
    this.rpcClient = null;
    this.locator?.close();
    this.locator = null;
    this.io?.close();
    this.io = null;
    if (this.ownsEngine) await this.core?.close();
    else if (this.core) {
      // Someone else's engine: leave it as we found it (transfers of ours have ended: every call awaits its own).
      for (const addr of [...buffers.addresses(), ...this.ownMemory]) {
        try {
          this.core.unregisterLocalMemory(addr);
        } catch {
          /* the engine was closed by its owner meanwhile */
        }
      }
    }
    this.ownMemory.length = 0;
    // After the engine stopped serving them: flushed, unmapped, unlocked.
    files.release(this.core, this.ownsEngine);
    this.core = null;
    buffers.clear();
    this.portHolder?.close();
    this.portHolder = null;
  }
}

/** Talk to the master: transport failures become Mooncake's RPC_FAIL / RPC_TIMEOUT. */
export async function overRpc<T>(rpc: RpcClient, what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (!(e instanceof TransferEngineError) || e instanceof StoreError) throw e;
    const code = e.code === ErrorCode.TIMEOUT ? StoreErrorCode.RPC_TIMEOUT : StoreErrorCode.RPC_FAIL;
    throw new StoreError(code, `${what} to the master at ${rpc.label} failed: ${e.message}`, e);
  }
}

function randomUuid(): UUID {
  const b = randomBytes(16);
  return { first: b.readBigUInt64LE(0), second: b.readBigUInt64LE(8) };
}
