/**
 * Soak (issue 9, item 3): a mixed workload under periodic faults for a set
 * time, every completed transfer checked byte by byte, and a final count.
 *
 *   node dist/benchmarks/soak.js [--minutes 10] [--fault-every 15] [--targets 2] [--netns auto|on|off] [--json]
 *
 * Workload, in parallel "lanes", each a loop of batches of 4 KiB..8 MiB reads
 * and writes (non-overlapping, patterns from test/pattern.ts, destinations
 * scrambled first and compared after):
 *  - one lane per target: this process's engine -> a target engine in a
 *    child process on loopback, through test/fault-proxy.ts (RPC and data ports);
 *  - with network namespaces (root): an engine in namespace a -> an engine in
 *    namespace b over a veth pair (test/netns.ts).
 * Faults, round robin, one every --fault-every seconds (none in the last
 * quarter of the run, so every fault has time to be recovered from):
 *  - loopback lanes, in turn: SIGKILL of the target in the middle of its
 *    batch, restarted on the same RPC port (a new data port, found again
 *    through the stale-descriptor rule); proxy reset; cut mid-payload;
 *    blackhole 3 s; throttle to 2 MiB/s (slow reader) 8 s; delay 50 ms 8 s;
 *  - every third fault, on the namespace link: down for 3 s, or 5% packet loss for 15 s.
 * A fault is "survived" when its lane later starts a batch after the fault
 * ended and every request of it completes and verifies.
 * Exit status: 0 only with 0 wrong bytes, every fault survived and transfers done.
 */
import { parseArgs } from 'node:util';
import { TransferEngine, TransferOpcode, TaskStatus, type TransferRequest } from '../src/core.js';
import { spawnPeer, type PeerProcess } from '../test/helpers.js';
import { NetnsPair, netnsUnavailable, peerCall, planRequests, resources, verifiedBatch, type PeerRegion, type PlannedRequest } from '../test/netns.js';
import { fillPattern } from '../test/pattern.js';
import { PASS, PROXY_HOST, proxyPeerPorts, type FaultMode, type PeerProxy } from '../test/fault-proxy.js';

const MiB = 1024 * 1024;
const REGION = 32 * MiB;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    'fault-every': { type: 'string', default: '15' },
    targets: { type: 'string', default: '2' },
    netns: { type: 'string', default: 'auto' },
    json: { type: 'boolean', default: false },
  },
});
const runMs = Number(args.minutes) * 60_000;
const faultEveryMs = Number(args['fault-every']) * 1000;
const nTargets = Number(args.targets);
if (!(runMs > 0) || !(faultEveryMs > 0) || !Number.isInteger(nTargets) || nTargets < 1 || !['auto', 'on', 'off'].includes(args.netns!)) {
  console.error('usage: soak.js [--minutes N>0] [--fault-every SECONDS>0] [--targets N>=1] [--netns auto|on|off] [--json]');
  process.exit(2);
}
const netnsWhy = netnsUnavailable();
if (args.netns === 'on' && netnsWhy !== null) {
  console.error(`--netns on: ${netnsWhy}`);
  process.exit(2);
}
const useNetns = args.netns !== 'off' && netnsWhy === null;
// Short timeouts: a dead peer should fail requests in seconds, not the default 30 s.
const ENGINE_ENV = { MC_TRANSFER_TIMEOUT: '5', MC_HANDSHAKE_CONNECT_TIMEOUT: '2' };

let seedState = 0x2545f491;
const nextSeed = (): number => (seedState = (seedState * 1103515245 + 12345) >>> 0) || 1;

// ---- Totals ----
const totals = {
  batches: 0,
  completed: 0,
  failed: 0,
  /** Completed, but the destination process was killed before it could be checked. */
  unverifiable: 0,
  bytesVerified: 0,
  wrongBytes: 0,
  failedBy: {} as Record<string, number>,
  /** Batches cut short because a peer process died under them (IPC, not transfer, errors), by message. */
  batchesAborted: 0,
  abortedBy: {} as Record<string, number>,
};
const wrongDetails: string[] = [];

interface Outcome {
  request: PlannedRequest;
  status: number;
  code: string | null;
  wrongBytes: number;
  /** First and last wrong byte, relative to the request (-1: none). */
  wrongRange: [number, number];
  verified: boolean;
}

// ---- Faults ----
interface Fault {
  kind: string;
  lane: Lane;
  start: number;
  end: number;
}
const faults: Fault[] = [];
const t0 = Date.now();

/** The fault most recently started on a lane before `t`, for the record of a wrong transfer. */
function lastFault(lane: Lane, t: number): string {
  const f = faults.filter((x) => x.lane === lane && x.start <= t).at(-1);
  return f ? `${f.kind}, ${((f.start - t0) / 1000).toFixed(1)}-${((f.end - t0) / 1000).toFixed(1)} s` : 'none';
}

function account(lane: Lane, started: number, outcomes: Outcome[]): boolean {
  totals.batches++;
  let clean = outcomes.length > 0;
  for (const o of outcomes) {
    if (o.status === TaskStatus.COMPLETED) {
      totals.completed++;
      if (!o.verified) {
        totals.unverifiable++;
        clean = false;
      } else if (o.wrongBytes > 0) {
        totals.wrongBytes += o.wrongBytes;
        wrongDetails.push(
          `${lane.name}: batch started at ${((started - t0) / 1000).toFixed(1)} s: ${o.request.op} of ${o.request.length} at +${o.request.offset}: ` +
            `${o.wrongBytes} wrong bytes in [+${o.wrongRange[0]}, +${o.wrongRange[1]}]; last fault on this lane: ${lastFault(lane, started)}`,
        );
        clean = false;
      } else totals.bytesVerified += o.request.length;
    } else {
      clean = false;
      totals.failed++;
      const why = `${TaskStatus[o.status] ?? o.status}/${o.code ?? 'no code'}`;
      totals.failedBy[why] = (totals.failedBy[why] ?? 0) + 1;
    }
  }
  return clean;
}

// ---- Lanes ----
interface Lane {
  name: string;
  /** Start times of batches in which every request completed and verified. */
  cleanStarts: number[];
  /** While a fault rebuilds the lane's peers, batches wait for this. */
  paused: Promise<void> | null;
  batch(): Promise<Outcome[]>;
}

/** This process's engine to a target in a child process, on loopback. */
class LoopbackLane implements Lane {
  cleanStarts: number[] = [];
  paused: Promise<void> | null = null;
  target!: PeerProcess;
  /** The target's RPC and data ports as its initiator sees them: through test/fault-proxy.ts. */
  proxy!: PeerProxy;
  targetAddr = 0;
  private segment = 0;
  private readonly localAddr: number;

  constructor(
    readonly name: string,
    private readonly engine: TransferEngine,
    private readonly local: Buffer,
  ) {
    this.localAddr = engine.registerLocalMemory(local);
  }

  async start(rpcPort = 0): Promise<void> {
    // Listens on 127.0.0.1, publishes PROXY_HOST, where the proxies listen with its port numbers.
    this.target = await spawnPeer({ PEER_LISTEN: '127.0.0.1' }, { host: PROXY_HOST, ...(rpcPort ? { rpcPort } : {}) });
    this.proxy = await proxyPeerPorts(this.target);
    this.targetAddr = await this.target.register(REGION);
    if (this.segment === 0) this.segment = await this.engine.openSegment(this.target.segmentName);
  }

  /** Put the data port's proxy in `mode` for `ms`, then back to passing. */
  async proxyFault(mode: FaultMode, ms: number): Promise<void> {
    this.proxy.setMode(mode);
    await sleep(ms);
    this.proxy.setMode(PASS);
  }

  /** SIGKILL the target in the middle of whatever it is doing; restart it on the same RPC port after `downMs`. */
  async killAndRestart(downMs: number): Promise<void> {
    const old = this.target;
    let release!: () => void;
    this.paused = new Promise<void>((r) => (release = r));
    old.kill();
    await new Promise<void>((r) => (old.child.exitCode !== null || old.child.signalCode !== null ? r() : old.child.once('exit', () => r())));
    await this.proxy.stop(); // the restarted target has a new data port: new proxies
    await sleep(downMs);
    try {
      await this.start(old.rpcPort);
    } finally {
      this.paused = null;
      release();
    }
  }

  async batch(): Promise<Outcome[]> {
    const target = this.target;
    const targetAddr = this.targetAddr;
    const reqs = planRequests(REGION, 4096, 8 * MiB, 1 + Math.floor(Math.random() * 8), nextSeed);
    const fills: Promise<unknown>[] = [];
    for (const r of reqs) {
      const local = this.local.subarray(r.offset, r.offset + r.length);
      if (r.op === 'write') {
        fillPattern(local, r.seed);
        fills.push(peerCall(target, 'fill', { addr: targetAddr + r.offset, length: r.length, seed: r.seed ^ 0x5a5a5a5a }));
      } else {
        fillPattern(local, r.seed ^ 0x5a5a5a5a);
        fills.push(peerCall(target, 'fill', { addr: targetAddr + r.offset, length: r.length, seed: r.seed }));
      }
    }
    await Promise.all(fills);
    const bid = this.engine.allocateBatchID(reqs.length);
    this.engine.submitTransfer(
      bid,
      reqs.map(
        (r): TransferRequest => ({
          opcode: r.op === 'write' ? TransferOpcode.WRITE : TransferOpcode.READ,
          source: this.localAddr + r.offset,
          targetId: this.segment,
          targetOffset: BigInt(targetAddr + r.offset),
          length: r.length,
        }),
      ),
    );
    const st = await this.engine.waitBatch(bid);
    this.engine.freeBatchID(bid);
    return Promise.all(
      reqs.map(async (r, i): Promise<Outcome> => {
        const s = st[i]!;
        const o: Outcome = { request: r, status: s.status, code: s.error?.code ?? null, wrongBytes: 0, wrongRange: [-1, -1], verified: false };
        if (s.status !== TaskStatus.COMPLETED) return o;
        if (r.op === 'read') {
          const want = Buffer.alloc(r.length);
          fillPattern(want, r.seed);
          const got = this.local.subarray(r.offset, r.offset + r.length);
          if (!want.equals(got)) {
            for (let k = 0; k < r.length; k++) {
              if (got[k] === want[k]) continue;
              if (o.wrongBytes++ === 0) o.wrongRange[0] = k;
              o.wrongRange[1] = k;
            }
          }
          o.verified = true;
        } else {
          try {
            const v = await peerCall<{ wrong: number; first: number; last: number }>(target, 'verify', { addr: targetAddr + r.offset, length: r.length, seed: r.seed });
            o.wrongBytes = v.wrong;
            o.wrongRange = [v.first, v.last];
            o.verified = true;
          } catch {
            // The target was killed after acknowledging: its memory is gone with it.
          }
        }
        return o;
      }),
    );
  }
}

/** An engine in namespace a to an engine in namespace b, over the veth pair. */
class NetnsLane implements Lane {
  readonly name = 'netns a->b';
  cleanStarts: number[] = [];
  paused: Promise<void> | null = null;
  init!: PeerRegion;
  target!: PeerRegion;
  constructor(readonly pair: NetnsPair) {}

  async start(): Promise<void> {
    const t = await this.pair.spawnPeer(this.pair.b, {}, { host: this.pair.addrB });
    const i = await this.pair.spawnPeer(this.pair.a, ENGINE_ENV, { host: this.pair.addrA });
    this.target = { peer: t, addr: await t.register(REGION), size: REGION };
    this.init = { peer: i, addr: await i.register(REGION), size: REGION };
  }

  async batch(): Promise<Outcome[]> {
    const reqs = planRequests(REGION, 4096, 8 * MiB, 1 + Math.floor(Math.random() * 8), nextSeed);
    const out = await verifiedBatch(this.init, this.target, this.target.peer.segmentName, reqs);
    return out.map((o) => ({ request: o.request, status: o.status, code: o.code, wrongBytes: o.wrongBytes, wrongRange: o.wrongRange, verified: o.status === TaskStatus.COMPLETED }));
  }
}

async function runLane(lane: Lane, until: () => boolean): Promise<void> {
  while (!until()) {
    if (lane.paused) await lane.paused;
    const t = Date.now();
    try {
      if (account(lane, t, await lane.batch())) lane.cleanStarts.push(t);
    } catch (e) {
      // A peer process died under the batch (its IPC calls reject); counted with its reason, the lane goes on.
      totals.batchesAborted++;
      const why = (e as Error).message.replace(/\d+/g, 'N').slice(0, 100);
      totals.abortedBy[why] = (totals.abortedBy[why] ?? 0) + 1;
      if (!lane.paused) await sleep(200);
    }
  }
}

async function main(): Promise<void> {
  const engine = new TransferEngine({ env: { ...process.env, ...ENGINE_ENV } });
  await engine.init('127.0.0.1');
  const loop: LoopbackLane[] = [];
  for (let i = 0; i < nTargets; i++) {
    const l = new LoopbackLane(`loopback #${i + 1}`, engine, Buffer.alloc(REGION));
    await l.start();
    loop.push(l);
  }
  let pair: NetnsPair | null = null;
  let nl: NetnsLane | null = null;
  if (useNetns) {
    pair = NetnsPair.create();
    nl = new NetnsLane(pair);
    await nl.start();
  }
  const lanes: Lane[] = [...loop, ...(nl ? [nl] : [])];
  console.log(
    `soak: ${(runMs / 60_000).toFixed(2)} min, a fault every ${faultEveryMs / 1000} s, lanes: ${lanes.map((l) => l.name).join(', ')}` +
      (useNetns ? '' : ` (no namespace lane: ${args.netns === 'off' ? '--netns off' : netnsWhy})`),
  );

  // Peak memory: this process every second, the peers every 5 s.
  let peakRss = 0;
  let peakHeap = 0;
  let peakPeerRss = 0;
  const peers = (): PeerProcess[] => [...loop.map((l) => l.target), ...(nl ? [nl.init.peer, nl.target.peer] : [])];
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  }, 1000);
  const peerSampler = setInterval(() => {
    for (const p of peers()) resources(p).then((r) => (peakPeerRss = Math.max(peakPeerRss, r.rss)), () => {});
  }, 5000);

  const endAt = t0 + runMs;
  const faultsUntil = t0 + runMs * 0.75;
  const done = (): boolean => Date.now() >= endAt;
  const running = lanes.map((l) => runLane(l, done));

  // Faults, round robin: every third one on the namespace link, the others on the loopback lanes.
  const loopKinds: Array<[string, (l: LoopbackLane) => Promise<void>]> = [
    ['SIGKILL+restart', (l) => l.killAndRestart(1000)],
    ['proxy reset (RST all, refuse new) 1.5 s', (l) => l.proxyFault({ kind: 'reset' }, 1500)],
    ['proxy cut mid-payload 2 s', (l) => l.proxyFault({ kind: 'cut', afterBytes: 64 * 1024 + Math.floor(Math.random() * 2 * MiB), direction: Math.random() < 0.5 ? 'up' : 'down', reset: Math.random() < 0.5 }, 2000)],
    ['proxy blackhole 3 s', (l) => l.proxyFault({ kind: 'blackhole' }, 3000)],
    ['proxy throttle 2 MiB/s 8 s', (l) => l.proxyFault({ kind: 'throttle', bytesPerSec: 2 * MiB }, 8000)],
    ['proxy delay 50 ms 8 s', (l) => l.proxyFault({ kind: 'delay', ms: 50 }, 8000)],
  ];
  const netKinds: Array<[string, (p: NetnsPair) => Promise<void>]> = [
    ['link down 3 s', async (p) => {
      p.setLink(false);
      await sleep(3000);
      p.setLink(true);
    }],
    ['5% loss 15 s', async (p) => {
      p.setLoss(0.05);
      await sleep(15_000);
      p.setLoss(0);
    }],
  ];
  let nLoop = 0;
  let nNet = 0;
  const nextFault = async (n: number): Promise<Fault> => {
    const start = Date.now();
    if (pair && nl && n % 3 === 2) {
      const [kind, f] = netKinds[nNet++ % netKinds.length]!;
      await f(pair);
      return { kind, lane: nl, start, end: Date.now() };
    }
    // Every kind in turn; the lanes alternate, shifted by one each cycle so that each lane meets each kind.
    const lane = loop[(nLoop + Math.floor(nLoop / loopKinds.length)) % loop.length]!;
    const [kind, f] = loopKinds[nLoop % loopKinds.length]!;
    nLoop++;
    await f(lane);
    return { kind: `${kind} (${lane.name})`, lane, start, end: Date.now() };
  };
  let k = 0;
  // One every faultEveryMs, but at least 2 s after the previous one ended (a 15 s loss would bunch the next ones).
  for (let next = t0 + faultEveryMs; next < faultsUntil; ) {
    await sleep(Math.max(0, next - Date.now()));
    if (Date.now() >= faultsUntil) break;
    const f = await nextFault(k++);
    faults.push(f);
    console.log(`  ${((f.start - t0) / 1000).toFixed(0).padStart(5)} s  fault: ${f.kind} (${f.end - f.start} ms)`);
    next = Math.max(next + faultEveryMs, f.end + 2000);
  }
  await Promise.all(running);
  clearInterval(sampler);
  clearInterval(peerSampler);
  const peerRes = await Promise.all(peers().map((p) => resources(p).catch(() => null)));
  for (const r of peerRes) if (r) peakPeerRss = Math.max(peakPeerRss, r.rss);

  const survived = faults.filter((f) => f.lane.cleanStarts.some((t) => t >= f.end));
  const st = engine.stats();
  const lanesAtEnd = st.lanes;
  const nsStats = nl ? (await resources(nl.init.peer).catch(() => null))?.stats : undefined;
  // Slices resent by the engines' own retries (MC_RETRY_CNT) and peers paused after repeated connect failures.
  const retries = st.retries + (nsStats?.['retries'] ?? 0);
  const peerPauses = st.peerPauses + (nsStats?.['peerPauses'] ?? 0);
  await engine.close();
  for (const l of loop) {
    await l.target.stop();
    await l.proxy.stop();
  }
  await pair?.destroy();
  // Everything is closed: no socket, server or timer of ours may be left (stdio and IPC pipes aside).
  const leftovers = async (): Promise<string[]> => {
    for (let i = 0; ; i++) {
      const left = process.getActiveResourcesInfo().filter((r) => /TCP|Timeout|Immediate/.test(r));
      if (left.length === 0 || i >= 50) return left;
      await sleep(100);
    }
  };
  const left = await leftovers();
  const m = process.memoryUsage();
  peakRss = Math.max(peakRss, m.rss);
  peakHeap = Math.max(peakHeap, m.heapUsed);

  const summary = {
    minutes: Number(((Date.now() - t0) / 60_000).toFixed(2)),
    lanes: lanes.map((l) => l.name),
    batches: totals.batches,
    transfersCompleted: totals.completed,
    transfersFailed: totals.failed,
    failedBy: totals.failedBy,
    completedUnverifiable: totals.unverifiable,
    batchesAborted: totals.batchesAborted,
    abortedBy: totals.abortedBy,
    bytesVerified: totals.bytesVerified,
    faultsInjected: faults.length,
    faultsSurvived: survived.length,
    faultsByKind: faults.reduce<Record<string, number>>((a, f) => ((a[f.kind] = (a[f.kind] ?? 0) + 1), a), {}),
    wrongBytes: totals.wrongBytes,
    engineRetries: retries,
    peerPauses,
    peakRssMiB: Math.round(peakRss / MiB),
    peakHeapMiB: Math.round(peakHeap / MiB),
    peakPeerRssMiB: Math.round(peakPeerRss / MiB),
    initiatorLanesAtEnd: lanesAtEnd,
    handlesLeftAfterClose: left,
  };
  const ok = totals.wrongBytes === 0 && survived.length === faults.length && totals.completed > 0 && left.length === 0;
  console.log(
    [
      `transfers completed: ${summary.transfersCompleted} (${totals.unverifiable} of them unverifiable: target killed before the check)`,
      `transfers failed:    ${summary.transfersFailed} ${JSON.stringify(summary.failedBy)}`,
      `batches aborted:     ${summary.batchesAborted} (a peer process died under them) ${JSON.stringify(totals.abortedBy)}`,
      `bytes verified:      ${summary.bytesVerified} (${(summary.bytesVerified / 2 ** 30).toFixed(2)} GiB)`,
      `faults injected:     ${summary.faultsInjected} ${JSON.stringify(summary.faultsByKind)}`,
      `faults survived:     ${summary.faultsSurvived}`,
      `wrong bytes:         ${summary.wrongBytes}`,
      `engine retries:      ${retries} slices resent, ${peerPauses} peer pauses`,
      `peak memory:         soak process RSS ${summary.peakRssMiB} MiB, heap ${summary.peakHeapMiB} MiB; peers' RSS ${summary.peakPeerRssMiB} MiB`,
      `left after close:    ${left.length === 0 ? 'no sockets, servers or timers' : left.join(', ')} (initiator had ${lanesAtEnd} lanes open at the end)`,
      ok ? 'PASS' : 'FAIL',
    ].join('\n'),
  );
  for (const d of wrongDetails.slice(0, 20)) console.log(`  wrong: ${d}`);
  for (const f of faults) if (!survived.includes(f)) console.log(`  not survived: ${f.kind} at ${((f.start - t0) / 1000).toFixed(0)} s`);
  if (args.json) console.log(JSON.stringify(summary));
  process.exitCode = ok ? 0 : 1;
}

await main();
