/**
 * The high-level engine's life: initialize() makes and starts a core engine
 * with the settings of Mooncake's environment variables, and close() closes it. Whether
 * the engine is ready or closed is the core's state (its `lifecycle`); this
 * module adds only what the core cannot know because it does not exist yet:
 * an initialize() running, and a close() that came before any core did.
 */
import { TransferEngine as CoreEngine } from '../engine/engine.js';
import { envVar } from '../env.js';
import { ErrorCode, TransferEngineError, teError } from '../errors.js';
import { loadApiSettings, type Env } from './env.js';
import type { Logger } from './log.js';
import { MetricsReporter } from './metrics.js';
import { Registrations } from './registrations.js';
import type { Topology } from './topology.js';
import { Transfers } from './transfers.js';

/** A started engine: the core, and the parts of the Python binding's API beside it. */
export interface Running {
  readonly core: CoreEngine;
  readonly memory: Registrations;
  readonly transfers: Transfers;
  /** MC_CUSTOM_TOPO_JSON, parsed: the API's variable (the core is given only the source address it picks). */
  readonly topology: Topology | undefined;
  /** MC_TE_METRIC's reporter (null when off): the API's feature, reading the core's counters. */
  readonly metrics: MetricsReporter | null;
}

export interface LifecycleOptions {
  env: Env;
  logger: Logger;
  /** Managed buffers in named shared memory (the core's `shm` option). */
  shm: boolean;
  authSecret: string | Uint8Array | undefined;
  /** The core's metricsPort (default TE_METRICS_PORT). */
  metricsPort: number | undefined;
}

export class Lifecycle {
  private running: Running | null = null;
  /** initialize() is running: its core is not ready, and is nobody else's to use or close. */
  private starting = false;
  /** close() came while no core was running (before or during initialize()): there was no core to remember it. */
  private closedEarly = false;

  constructor(private readonly options: LifecycleOptions) {}

  /** The started engine once initialize() succeeded, closed since or not; null before. */
  get started(): Running | null {
    return this.running;
  }

  /** The started engine, or TE_NOT_INITIALIZED / TE_CLOSED. */
  ready(): Running {
    const r = this.running;
    if (r && r.core.lifecycle === 'ready') return r;
    if (this.closed) throw teError(ErrorCode.CLOSED, 'the engine is closed');
    throw teError(ErrorCode.NOT_INITIALIZED, 'call initialize() first');
  }

  private get closed(): boolean {
    return this.closedEarly || this.running?.core.lifecycle === 'closed';
  }

  /** Make the core, start it, and install the protocol; the engine is left as it was on failure (initialize may be called again). */
  async start(localHostname: string, metadata: string, protocol: string): Promise<void> {
    if (this.closed) throw teError(ErrorCode.CLOSED, 'the engine is closed');
    if (this.running || this.starting) throw teError(ErrorCode.ALREADY_INITIALIZED, 'the engine is already initialized');
    const { env, logger, shm, authSecret, metricsPort } = this.options;
    this.starting = true;
    let core: CoreEngine | null = null;
    try {
      const settings = await loadApiSettings(env);
      logger.level = settings.logLevel;
      const topology = settings.topology;
      core = new CoreEngine({
        env,
        ...(shm ? { shm: true } : {}),
        ...(authSecret !== undefined ? { authSecret } : {}),
        ...(metricsPort !== undefined ? { metricsPort } : {}),
        ...(metadata !== '' ? { metadataServer: metadata } : {}),
        ...(topology ? { sourceAddress: (location: string) => topology.sourceAddress(location) } : {}),
      });
      try {
        await core.init(localHostname);
      } catch (e) {
        // Name the variable when the metadata service came from the environment.
        const fromEnv = metadata === '' ? envVar('MC_METADATA_SERVER', env) : undefined;
        if (fromEnv && e instanceof TransferEngineError && e.message.includes(fromEnv)) {
          throw teError(e.code, `MC_METADATA_SERVER="${fromEnv}": ${e.message}`, e);
        }
        throw e;
      }
      // tcp is installed by init; any other name is a transport this host cannot run (or an unknown one).
      if (protocol !== '' && protocol !== 'tcp') await core.installTransport(protocol);
      if (this.closedEarly) throw teError(ErrorCode.CLOSED, 'close() was called during initialize()');
      const c = core;
      const memory = new Registrations(c, shm);
      const metrics = settings.metric ? new MetricsReporter(() => c.stats(), settings.metricIntervalSeconds, (line) => logger.info(line)) : null;
      this.running = { core: c, memory, transfers: new Transfers(c, memory, logger), topology, metrics };
      metrics?.start();
      logger.info(
        `initialized segment ${c.segmentName} (rpc port ${c.rpcPort}, data port ${c.dataPort}, protocol tcp, metadata ${metadata || envVar('MC_METADATA_SERVER', env) || 'P2PHANDSHAKE'})`,
      );
    } catch (e) {
      await core?.close();
      throw e;
    } finally {
      this.starting = false;
    }
  }

  /** Close the core (in-flight transfers fail) and forget uncollected batches. Idempotent. */
  async close(): Promise<void> {
    const r = this.running;
    if (!r) {
      this.closedEarly = true;
      return;
    }
    r.metrics?.stop();
    await r.core.close(); // idempotent
    r.transfers.clear();
  }
}
