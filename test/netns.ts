/**
 * Multi-host fault harness: two network namespaces joined by a veth pair, so
 * engines talk real TCP through a real (virtual) link that the tests can take
 * down, make lossy (iptables `statistic` drops) or slow (tbf). This kernel has
 * no netem, so delay comes from test/fault-proxy.ts instead (RELIABILITY.md).
 *
 * Needs root, `ip`, `tc`, `ss` and `iptables`. Namespaces are named
 * `te-<pid>-<n>-a/b`; the ones of dead processes are removed on creation and
 * ours on process exit, whatever happens to the test.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TaskStatus } from '../src/core.js';
import { PeerProcess } from './helpers.js';

const PEER = fileURLToPath(new URL('./fixtures/peer.js', import.meta.url));

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function commandExists(cmd: string): boolean {
  try {
    run('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

/** Why the harness cannot run here, or null if it can. */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  for (const c of ['ip', 'tc', 'ss', 'iptables']) if (!commandExists(c)) return `\`${c}\` is not installed`;
  return null;
}

/**
 * For tests: the reason to skip, or null to run. Under CI=true a missing
 * capability is a failure, not a skip (CI runs as root with iptables installed).
 */
export function netnsSkipReason(): string | null {
  const why = netnsUnavailable();
  if (why === null) return null;
  if (process.env['CI'] === 'true') throw new Error(`network namespace tests cannot run in CI: ${why}`);
  process.stderr.write(`\n*** SKIPPING network-namespace fault tests: ${why} (they need root, ip, tc, ss, iptables) ***\n\n`);
  return why;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Remove `te-<pid>-*` namespaces whose creating process is gone (crashed earlier runs). */
export function removeStaleNamespaces(): string[] {
  const removed: string[] = [];
  for (const line of run('ip', ['netns', 'list']).split('\n')) {
    const name = line.trim().split(/\s+/)[0] ?? '';
    const m = /^te-(\d+)-/.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    try {
      run('ip', ['netns', 'delete', name]);
      removed.push(name);
    } catch {
      // Already gone.
    }
  }
  return removed;
}

const live = new Set<NetnsPair>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous on purpose: 'exit' handlers cannot await. Signals become exits so the hook runs.
  process.on('exit', () => {
    for (const p of live) p.destroySync();
  });
  process.once('SIGINT', () => process.exit(130));
  process.once('SIGTERM', () => process.exit(143));
}

let counter = 0;

export interface SocketCounts {
  /** TCP sockets by state (ss names: ESTAB, TIME-WAIT, LISTEN, ...). */
  byState: Record<string, number>;
  /** Every TCP socket that is neither listening nor in TIME-WAIT. */
  open: number;
  /** Bytes the kernel still has to send, over all sockets (ss Send-Q): data an orphaned socket would still deliver. */
  sendQueued: number;
}

/** Two namespaces `a` and `b`, one veth pair, addresses `addrA`/`addrB` in 10.213.0.0/30. */
export class NetnsPair {
  readonly a: string;
  readonly b: string;
  /** Interface names inside a and b (at most 15 characters). */
  readonly ifA: string;
  readonly ifB: string;
  readonly addrA = '10.213.0.1';
  readonly addrB = '10.213.0.2';
  /** The same link's IPv6 addresses (unique local, fd00::/8), usable at once (nodad). */
  readonly addr6A = 'fd13:213::1';
  readonly addr6B = 'fd13:213::2';
  private readonly peers = new Set<PeerProcess>();
  /** Other processes started in a namespace (spawnIn): SIGKILLed when the pair is destroyed. */
  private readonly children = new Set<ChildProcess>();
  private destroyed = false;

  private constructor(id: string) {
    this.a = `te-${id}-a`;
    this.b = `te-${id}-b`;
    const short = `${process.pid.toString(36)}${counter.toString(36)}`.slice(-9);
    this.ifA = `te${short}a`;
    this.ifB = `te${short}b`;
  }

  static create(): NetnsPair {
    const why = netnsUnavailable();
    if (why !== null) throw new Error(`network namespaces unavailable: ${why}`);
    removeStaleNamespaces();
    installExitHook();
    counter++;
    const p = new NetnsPair(`${process.pid}-${counter}`);
    live.add(p);
    try {
      run('ip', ['netns', 'add', p.a]);
      run('ip', ['netns', 'add', p.b]);
      // Created inside `a` so that nothing, even briefly, lives in the host's namespace.
      run('ip', ['-n', p.a, 'link', 'add', p.ifA, 'type', 'veth', 'peer', 'name', p.ifB, 'netns', p.b]);
      run('ip', ['-n', p.a, 'addr', 'add', `${p.addrA}/30`, 'dev', p.ifA]);
      run('ip', ['-n', p.b, 'addr', 'add', `${p.addrB}/30`, 'dev', p.ifB]);
      run('ip', ['-n', p.a, '-6', 'addr', 'add', `${p.addr6A}/64`, 'dev', p.ifA, 'nodad']);
      run('ip', ['-n', p.b, '-6', 'addr', 'add', `${p.addr6B}/64`, 'dev', p.ifB, 'nodad']);
      for (const [ns, dev] of [[p.a, 'lo'], [p.b, 'lo'], [p.a, p.ifA], [p.b, p.ifB]] as const) run('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    } catch (e) {
      p.destroySync();
      throw e;
    }
    return p;
  }

  /** Run a command inside a namespace; returns stdout. */
  exec(ns: string, cmd: string, args: string[]): string {
    return run('ip', ['netns', 'exec', ns, cmd, ...args]);
  }

  /**
   * Drop incoming packets with this probability on both ends (so each
   * direction loses about `probability`); 0 removes the rules.
   */
  setLoss(probability: number): void {
    for (const [ns, dev] of [[this.a, this.ifA], [this.b, this.ifB]] as const) {
      this.exec(ns, 'iptables', ['-F', 'INPUT']);
      if (probability > 0) {
        this.exec(ns, 'iptables', ['-A', 'INPUT', '-i', dev, '-m', 'statistic', '--mode', 'random', '--probability', String(probability), '-j', 'DROP']);
      }
    }
  }

  /** Packets dropped by the loss rules so far (both ends). */
  droppedPackets(): number {
    let n = 0;
    for (const ns of [this.a, this.b]) {
      const out = this.exec(ns, 'iptables', ['-L', 'INPUT', '-v', '-n', '-x']);
      for (const line of out.split('\n')) {
        const f = line.trim().split(/\s+/);
        if (f[2] === 'DROP') n += Number(f[0]);
      }
    }
    return n;
  }

  /**
   * Carrier off/on at one end of the link (`a`'s unless `end` says 'b'), which takes the other end's
   * carrier with it. The end set down loses its routes (connects there fail at once, ENETUNREACH); the
   * other keeps them, so its packets are silently lost, as toward a host gone dark.
   */
  setLink(up: boolean, end: 'a' | 'b' = 'a'): void {
    const [ns, dev] = end === 'a' ? [this.a, this.ifA] : [this.b, this.ifB];
    run('ip', ['-n', ns, 'link', 'set', dev, up ? 'up' : 'down']);
  }

  /** Cap both directions with a token bucket (e.g. '200mbit'); null removes it. */
  setRate(rate: string | null): void {
    for (const [ns, dev] of [[this.a, this.ifA], [this.b, this.ifB]] as const) {
      if (rate === null) {
        try {
          this.exec(ns, 'tc', ['qdisc', 'del', 'dev', dev, 'root']);
        } catch {
          // No qdisc was set.
        }
      } else {
        this.exec(ns, 'tc', ['qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', '256kb', 'latency', '100ms']);
      }
    }
  }

  /** TCP sockets in a namespace (ss sees only that namespace's sockets). */
  sockets(ns: string): SocketCounts {
    const byState: Record<string, number> = {};
    let open = 0;
    let sendQueued = 0;
    for (const line of this.exec(ns, 'ss', ['-tanH']).split('\n')) {
      const [state, , sendQ] = line.trim().split(/\s+/);
      if (!state) continue;
      byState[state] = (byState[state] ?? 0) + 1;
      if (state !== 'LISTEN' && state !== 'TIME-WAIT') open++;
      if (state !== 'LISTEN') sendQueued += Number(sendQ ?? 0) || 0;
    }
    return { byState, open, sendQueued };
  }

  /**
   * A test/fixtures/peer.js engine inside namespace `ns`, driven over IPC as
   * test/helpers.ts spawnPeer's (`ip netns exec` execs node in place, so the
   * IPC descriptor is inherited). Run with --expose-gc for its 'resources' command.
   */
  async spawnPeer(ns: string, env: Record<string, string> = {}, init: Record<string, unknown> = {}): Promise<PeerProcess> {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--expose-gc', PEER], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`peer in ${ns} exited early with ${code}`)));
    });
    const p = new PeerProcess(child);
    this.peers.add(p);
    child.once('exit', () => this.peers.delete(p));
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
   * Any command inside namespace `ns` (`ip netns exec` execs it in place, so the child's pid is the
   * command's); SIGKILLed, if still running, when the pair is destroyed.
   */
  spawnIn(ns: string, cmd: string, args: string[], options: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], options);
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Stop the peers, then remove both namespaces (the veth pair goes with them). */
  async destroy(): Promise<void> {
    await Promise.all([...this.peers].map((p) => p.stop()));
    this.destroySync();
  }

  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const p of this.peers) p.kill();
    for (const c of this.children) c.kill('SIGKILL');
    for (const ns of [this.a, this.b]) {
      try {
        run('ip', ['netns', 'delete', ns]);
      } catch {
        // Never created, or already gone.
      }
    }
  }
}

// ---- Verified transfers between two peer processes ----

/**
 * PeerProcess.call for peers that may be killed at any moment: rejects at once
 * when the IPC channel is closed (a send on a closed channel would otherwise
 * be an unhandled 'error' event, and the call would never settle).
 */
export function peerCall<T = Record<string, unknown>>(p: PeerProcess, cmd: string, args: Record<string, unknown> = {}): Promise<T> {
  if (p.child.listenerCount('error') === 0) p.child.on('error', () => {}); // late send errors: the 'exit' handler rejects the call
  if (!p.child.connected) return Promise.reject(new Error(`peer ${p.child.pid} is gone (${cmd})`));
  return p.call<T>(cmd, args);
}

export interface PeerRegion {
  peer: PeerProcess;
  addr: number;
  size: number;
}

export interface PlannedRequest {
  op: 'read' | 'write';
  /** Same offset in the initiator's and the target's region. */
  offset: number;
  length: number;
  /** Pattern written at the source (the destination is first overwritten with seed ^ 0x5a5a5a5a). */
  seed: number;
}

export interface RequestOutcome {
  request: PlannedRequest;
  status: number;
  transferred: number;
  code: string | null;
  /** For COMPLETED requests: destination bytes differing from the source pattern. */
  wrongBytes: number;
  /** Offsets (in the request) of the first and last wrong byte; -1 when none. */
  wrongRange: [number, number];
}

/**
 * Fill sources and scramble destinations, run the requests as one batch from
 * `init` to `target`, then compare every COMPLETED destination with the
 * source pattern byte by byte (inside the peers, so no payload crosses IPC).
 * Requests must not overlap.
 */
export async function verifiedBatch(init: PeerRegion, target: PeerRegion, segment: string, requests: PlannedRequest[]): Promise<RequestOutcome[]> {
  const dst = (r: PlannedRequest): PeerRegion => (r.op === 'read' ? init : target);
  const src = (r: PlannedRequest): PeerRegion => (r.op === 'read' ? target : init);
  await Promise.all(
    requests.flatMap((r) => [
      peerCall(src(r).peer, 'fill', { addr: src(r).addr + r.offset, length: r.length, seed: r.seed }),
      peerCall(dst(r).peer, 'fill', { addr: dst(r).addr + r.offset, length: r.length, seed: r.seed ^ 0x5a5a5a5a }),
    ]),
  );
  const { statuses } = await peerCall<{ statuses: Array<{ status: number; transferred: number; code: string | null }> }>(init.peer, 'transfer', {
    segment,
    requests: requests.map((r) => ({ op: r.op, source: init.addr + r.offset, target: String(target.addr + r.offset), length: r.length })),
  });
  return Promise.all(
    requests.map(async (r, i) => {
      const s = statuses[i]!;
      let wrongBytes = 0;
      let wrongRange: [number, number] = [-1, -1];
      if (s.status === TaskStatus.COMPLETED) {
        const v = await peerCall<{ wrong: number; first: number; last: number }>(dst(r).peer, 'verify', { addr: dst(r).addr + r.offset, length: r.length, seed: r.seed });
        wrongBytes = v.wrong;
        wrongRange = [v.first, v.last];
      }
      return { request: r, status: s.status, transferred: s.transferred, code: s.code, wrongBytes, wrongRange };
    }),
  );
}

/** Non-overlapping requests of random sizes in [minSize, maxSize] (multiples of 4 KiB) packed into a region. */
export function planRequests(regionSize: number, minSize: number, maxSize: number, count: number, nextSeed: () => number, ops: Array<'read' | 'write'> = ['read', 'write']): PlannedRequest[] {
  const out: PlannedRequest[] = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const span = Math.floor((maxSize - minSize) / 4096);
    const length = minSize + 4096 * Math.floor(Math.random() * (span + 1));
    if (offset + length > regionSize) break;
    out.push({ op: ops[Math.floor(Math.random() * ops.length)]!, offset, length, seed: nextSeed() });
    offset += length;
  }
  return out;
}

export interface PeerResources {
  handles: Record<string, number>;
  rss: number;
  heapUsed: number;
  external: number;
  stats: { lanes: number; dataConnections: number; [k: string]: number };
}

export function resources(p: PeerProcess): Promise<PeerResources> {
  return peerCall<PeerResources>(p, 'resources');
}
