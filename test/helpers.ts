/** Test helpers: a peer engine in a child process (test/fixtures/peer.ts). */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { TransferOpcode, TaskStatus, type TransferEngine } from '../src/core.js';
import { patternBuffer } from './pattern.js';
import { httpGet } from './servers.js';

const PEER = fileURLToPath(new URL('./fixtures/peer.js', import.meta.url));

export interface PeerError extends Error {
  code: string | null;
}

export class PeerProcess {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  segmentName = '';
  rpcPort = 0;
  dataPort = 0;

  constructor(readonly child: ChildProcess) {
    child.on('message', (m: { id?: number; ok?: boolean; result?: unknown; error?: string; code?: string | null }) => {
      if (m.id === undefined) return;
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.ok) w.resolve(m.result);
      else w.reject(Object.assign(new Error(m.error), { code: m.code ?? null }));
    });
    child.on('exit', () => {
      for (const w of this.waiting.values()) w.reject(new Error('peer process exited'));
      this.waiting.clear();
    });
  }

  call<T = Record<string, unknown>>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      if (!this.child.connected) {
        reject(new Error(`peer process is gone (call "${cmd}")`));
        return;
      }
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      // The channel can close between the check and the send (the peer was just killed).
      this.child.send({ id, cmd, ...args }, (err) => {
        if (err && this.waiting.delete(id)) reject(err);
      });
    });
  }

  async register(size: number, seed?: number, opts: { remoteAccessible?: boolean } = {}): Promise<number> {
    const r = await this.call<{ addr: number }>('register', { size, seed, ...opts });
    return r.addr;
  }

  async hash(addr: number, length: number): Promise<string> {
    return (await this.call<{ sha256: string }>('hash', { addr, length })).sha256;
  }

  /** SIGKILL: a peer that dies without closing anything. */
  kill(): void {
    this.child.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.disconnect();
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
}

/**
 * @param init arguments of the peer's init: { host, connectable, rpcPort, metadataServer, env }.
 *   Without metadataServer/env the peer keeps its default (P2P) engine.
 */
export async function spawnPeer(env: Record<string, string> = {}, init: Record<string, unknown> = {}): Promise<PeerProcess> {
  const child = fork(PEER, [], { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`peer exited early with ${code}`)));
  });
  const p = new PeerProcess(child);
  const info = await p.call<{ segmentName: string; rpcPort: number; dataPort: number }>('init', init).catch(async (e: unknown) => {
    await p.stop();
    throw e;
  });
  p.segmentName = info.segmentName;
  p.rpcPort = info.rpcPort;
  p.dataPort = info.dataPort;
  return p;
}

/**
 * A peer process started but not initialized: `init()` it later (fault tests
 * start a replacement before killing a target, so that it comes back at once).
 */
export async function forkPeer(env: Record<string, string> = {}): Promise<PeerProcess> {
  const child = fork(PEER, [], { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`peer exited early with ${code}`)));
  });
  return new PeerProcess(child);
}

/** Initialize a peer from forkPeer (the arguments of spawnPeer's `init`). */
export async function initPeer(p: PeerProcess, init: Record<string, unknown> = {}): Promise<PeerProcess> {
  const info = await p.call<{ segmentName: string; rpcPort: number; dataPort: number }>('init', init);
  p.segmentName = info.segmentName;
  p.rpcPort = info.rpcPort;
  p.dataPort = info.dataPort;
  return p;
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** What one run of the `transfer-engine` command did. */
export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const CLI_MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Run `transfer-engine ...args` (the built CLI) to its end; SIGKILLed after `timeoutMs`. */
export function runCli(args: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** GET on a fresh connection (a pooled one would hold the server open); null if it could not connect. */
function getText(port: number, path: string): Promise<{ status: number; body: string } | null> {
  return httpGet(port, path).catch(() => null);
}

/** One scrape of an engine's metrics port: /metrics and /health, both answered 200. */
export interface Scrape {
  metrics: string;
  health: string;
}

/** Scrape /metrics and /health on 127.0.0.1:port every 25 ms until `until` settles; the scrapes that got 200 on both. */
export async function scrapeWhile(port: number, until: Promise<unknown>): Promise<Scrape[]> {
  let done = false;
  until.then(
    () => (done = true),
    () => (done = true),
  );
  const out: Scrape[] = [];
  while (!done) {
    const metrics = await getText(port, '/metrics');
    const health = await getText(port, '/health');
    if (metrics?.status === 200 && health?.status === 200) out.push({ metrics: metrics.body, health: health.body });
    await new Promise((r) => setTimeout(r, 25));
  }
  return out;
}

/** The sum of a counter's samples whose labels include `labels` (a Prometheus text exposition). */
export function counterSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (!Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`))) continue;
    sum += Number(m[3]);
  }
  return sum;
}

/** `p`, or a rejection naming `what` as a hang once `ms` have passed. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not end within ${ms} ms (hang)`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A WRITE then a READ of `size` between two engines, both checked byte for byte. */
export async function roundTrip(a: TransferEngine, b: TransferEngine, segment: string, size = 1 << 20, seed = 7): Promise<void> {
  const src = patternBuffer(size, seed);
  const back = new Uint8Array(size);
  const remote = new Uint8Array(size);
  const la = a.registerLocalMemory(src);
  const lback = a.registerLocalMemory(back);
  const rb = b.registerLocalMemory(remote);
  try {
    const seg = await a.openSegment(segment);
    for (const [opcode, source] of [[TransferOpcode.WRITE, la], [TransferOpcode.READ, lback]] as const) {
      const id = a.allocateBatchID(1);
      a.submitTransfer(id, [{ opcode, source, targetId: seg, targetOffset: rb, length: size }]);
      const [s] = await a.waitBatch(id);
      assert.equal(s!.status, TaskStatus.COMPLETED, s!.error?.message);
      a.freeBatchID(id);
    }
    assert.deepEqual(Buffer.from(remote), Buffer.from(src), 'the WRITE landed byte-exact');
    assert.deepEqual(Buffer.from(back), Buffer.from(src), 'the READ came back byte-exact');
  } finally {
    a.unregisterLocalMemory(la);
    a.unregisterLocalMemory(lback);
    b.unregisterLocalMemory(rb);
  }
}
