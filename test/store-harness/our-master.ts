/**
 * Our master (`transfer-engine master`) as a child process with its JSON events read
 * (`master_ready`, `master_standby`), for tests and the store soak that kill masters:
 * alone (a fixed RPC port, so a restart takes the same address; optionally `--data_dir`),
 * or one of several with `--ha etcd://...` (each leader on a port of its own; clients
 * follow the leader through etcd).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { isAlive, killOnExit, stopChild } from './master.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface OurMasterOptions {
  /** `etcd://h:p,...`: run as one of the HA masters of `cluster`. */
  ha?: string;
  cluster?: string;
  /** `--ha_lease_ttl` (s), default 2. */
  haLeaseTtlS?: number;
  /** Fixed RPC port (default 0: a free one, given by the ready event). */
  rpcPort?: number;
  /** `--client_ttl` (s). */
  clientTtlS?: number;
  /** More flags, last. */
  extraArgs?: string[];
}

export class OurMaster {
  readonly events: Array<Record<string, unknown>> = [];
  private output = '';
  private waiters: Array<() => void> = [];

  private constructor(
    readonly child: ChildProcess,
    readonly argv: string[],
  ) {
    killOnExit(child);
    createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        this.events.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        this.note(l);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    child.stderr!.on('data', (d: Buffer) => this.note(d.toString()));
    child.once('exit', (code, sig) => {
      this.note(`--- exited (${sig ?? code})`);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Spawn; does not wait (see ready() and standby()). */
  static spawn(opts: OurMasterOptions): OurMaster {
    const argv = [
      CLI,
      'master',
      '--rpc_address=127.0.0.1',
      `--rpc_port=${opts.rpcPort ?? 0}`,
      '--metrics_host=127.0.0.1',
      '--metrics_port=0',
      '--json',
      ...(opts.ha ? [`--ha=${opts.ha}`, `--cluster_id=${opts.cluster ?? 'mooncake_cluster'}`, `--ha_lease_ttl=${opts.haLeaseTtlS ?? 2}`] : []),
      ...(opts.clientTtlS !== undefined ? [`--client_ttl=${opts.clientTtlS}`] : []),
      ...(opts.extraArgs ?? []),
    ];
    return new OurMaster(spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] }), argv);
  }

  /** Spawn and wait until it serves (the leader, for HA). */
  static async start(opts: OurMasterOptions, ms = 30_000): Promise<OurMaster> {
    const m = OurMaster.spawn(opts);
    await m.ready(ms);
    return m;
  }

  /** The same command line again (a fixed --rpc_port makes it the same address). */
  respawn(): OurMaster {
    return new OurMaster(spawn(process.execPath, this.argv, { stdio: ['ignore', 'pipe', 'pipe'] }), this.argv);
  }

  get alive(): boolean {
    return isAlive(this.child);
  }

  get log(): string {
    return this.output;
  }

  /** The ready event's RPC port (0 before it leads). */
  get rpcPort(): number {
    return Number(this.events.find((e) => e['event'] === 'master_ready')?.['rpcPort'] ?? 0);
  }

  get metricsPort(): number {
    return Number(this.events.find((e) => e['event'] === 'master_ready')?.['metricsPort'] ?? 0);
  }

  get isLeader(): boolean {
    return this.alive && this.events.some((e) => e['event'] === 'master_ready');
  }

  /** Resolves with the `master_ready` event (it leads and serves); rejects if it exits first or after `ms`. */
  ready(ms = 30_000): Promise<Record<string, unknown>> {
    return this.event('master_ready', ms);
  }

  standby(ms = 30_000): Promise<Record<string, unknown>> {
    return this.event('master_standby', ms);
  }

  private async event(name: string, ms: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + ms;
    for (;;) {
      const e = this.events.find((x) => x['event'] === name);
      if (e) return e;
      if (!this.alive) throw new Error(`master exited before "${name}":\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`no "${name}" from the master within ${ms} ms:\n${this.output}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** GET /health on the metrics port: the master's stats (objects, writingObjects, usedBytes, ...). */
  async health(): Promise<Record<string, number | string>> {
    const r = await fetch(`http://127.0.0.1:${this.metricsPort}/health`, { signal: AbortSignal.timeout(2000) });
    return (await r.json()) as Record<string, number | string>;
  }

  /** GET /metrics: one sample's value (first match of `name`), or undefined. */
  async metric(name: string): Promise<number | undefined> {
    const r = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`, { signal: AbortSignal.timeout(2000) });
    const line = (await r.text()).split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    return stopChild(this.child, signal);
  }

  stop(): Promise<void> {
    return stopChild(this.child, 'SIGTERM');
  }

  private note(s: string): void {
    this.output = (this.output + s + (s.endsWith('\n') ? '' : '\n')).slice(-20_000);
  }
}
