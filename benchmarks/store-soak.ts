/**
 * Store soak (issue 21): mixed put/get/remove from Node and Python store clients against our
 * master with --ha (2 masters on etcd) and 3 segment providers, a fault every few seconds, every
 * read checked against what was written, and a final count.
 *
 *   node dist/benchmarks/store-soak.js [--minutes 10] [--fault-every 5] [--json] [--selftest]
 *
 * Processes: etcd (1 member), our HTTP metadata server, 2 masters (`transfer-engine master --ha`,
 * --client_ttl 5, --ha_lease_ttl 2, puts given up after 5 s), 3 providers (our store clients in
 * child processes, 64 MiB segments each, no calls of their own), 4 workers without segments: 2 of
 * ours (test/store-harness/node-store.ts) and 2 of the wheel's Python client
 * (mooncake-transfer-engine-non-cuda 0.3.13.post1, test/store-harness/python-store.ts). Every client
 * finds the leader through etcd (`etcd://...`, MC_STORE_CLUSTER_ID).
 *
 * Workload: each worker in a loop, one call at a time: put 40% (a new key, 512 B..128 KiB,
 * replica_num 2), get 45% (mostly acknowledged keys of any worker, some recent keys in any state),
 * remove 15% (one of its own acknowledged keys, forced; more than 60 live: remove). Each worker
 * also keeps 10 "keepers", never removed and read now and then, so that provider kills pile up on
 * them (replaced when found gone). A value is pattern(seed, length) (SHAKE-256, python-store.ts),
 * seed and length recorded per key: a read is right only if it is the whole value (SHA-256).
 * After each acknowledged put the soak asks the leader where its replicas are (GetReplicaList).
 *
 * Faults, one every --fault-every seconds, in turn (none in the last fifth of the run):
 *  - provider: SIGKILL of a provider, a new one started 1 s later (a new segment);
 *  - leader: SIGKILL of the leading master; once the standby leads, the dead one is started
 *    again as the new standby;
 *  - client: SIGKILL of a worker (Node and Python in turn) while a put of it is in flight, and a
 *    new worker in its place.
 *
 * What counts:
 *  - wrong: a read that returned bytes other than the whole value of its key (its bytes count
 *    as wrong bytes). Must be 0.
 *  - lost: an acknowledged object (its put returned 0; keys are never reused, so 0 means this put
 *    wrote it), not removed (or with a removal of unknown outcome), found missing (a Node get
 *    OBJECT_NOT_FOUND, a Python get empty and is_exist 0, a remove OBJECT_NOT_FOUND, or unreadable
 *    in the final check once every fault is over), unless it is **exposed**: the provider of every
 *    segment holding a replica of it was killed since its put started (so its bytes died with
 *    them: nothing re-replicates an object). When the placement lookup failed (a failover), the
 *    rule is two provider kills or more since the put started: with replica_num 2 the object has
 *    two replicas on two providers (a put whose write to a dead provider fails is not
 *    acknowledged; one provider at most is down at a time). Exposed objects found gone or intact
 *    are counted apart. Must be 0.
 *  - removed but present: a removal acknowledged, the object still there in the final check. Must be 0.
 * Eviction would remove objects legitimately: the workload stays far below the capacity, and the
 * masters' eviction counters are read before each leader kill and at the end (reported; must be 0
 * for "lost" to mean anything).
 *
 * --selftest plants a key the registry says was acknowledged but was never written, and a key
 * whose recorded seed is not the one written: the run must then report lost >= 1 and wrong > 0
 * and exit 1 (test/store-soak.test.ts checks that the checks can fail).
 *
 * Exit status 0 only with 0 wrong, 0 lost, 0 removed-but-present, 0 evicted, at least one fault
 * of each kind and acknowledged puts.
 */
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { createHash } from 'node:crypto';
import { MooncakeDistributedStore } from '../src/store.js';
import { Master, StoreErrorCode as EC } from '../src/store/master-protocol.js';
import { masterLocator } from '../src/store/master-view.js';
import { memoryBuffer } from '../src/store/replica-io.js';
import { RpcClient } from '../src/store/rpc-client.js';
import { EtcdCluster, MetadataServerProcess, requireServer } from '../test/servers.js';
import { ensureInteropEnv } from '../test/interop/mooncake.js';
import { NodeStore, type StoreClientProcess } from '../test/store-harness/node-store.js';
import { OurMaster, type OurMasterOptions } from '../test/store-harness/our-master.js';
import { PythonStore, patternDigest, type ValueDigest } from '../test/store-harness/python-store.js';

const MiB = 1024 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    'fault-every': { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    selftest: { type: 'boolean', default: false },
  },
});
const runMs = Number(args.minutes) * 60_000;
const faultEveryMs = Number(args['fault-every']) * 1000;
if (!(runMs > 0) || !(faultEveryMs > 0)) {
  console.error('usage: store-soak.js [--minutes N>0] [--fault-every SECONDS>0] [--json] [--selftest]');
  process.exit(2);
}
const log = (s: string): void => {
  if (!args.json) console.log(s);
  else console.error(s);
};

const skip = ensureInteropEnv();
if (skip) {
  console.error(`store soak: the wheel is not available: ${skip}`);
  process.exit(2);
}
const etcdBin = requireServer('etcd');
if (etcdBin.skip) {
  console.error(`store soak: ${etcdBin.skip}`);
  process.exit(2);
}

// ---- the registry of keys and what counts ----

/** gone: found missing (lost or exposed), not checked again; removing: a remove in flight. */
type State = 'pending' | 'acked' | 'failed' | 'removing' | 'removed' | 'removeUncertain' | 'gone';
interface Obj {
  key: string;
  seed: number;
  size: number;
  by: string;
  state: State;
  startedAt: number;
  /** A keeper: never removed, read now and then for the whole run (so provider kills pile up on it). */
  keep?: boolean;
  /** Where its replicas are (their segments' endpoints), asked of the master right after the put; undefined if that failed. */
  where?: string[];
}
const objs: Obj[] = [];
const byKey = new Map<string, Obj>();
let nextSeed = 1;

const counts = {
  ops: { put: 0, get: 0, remove: 0 },
  ok: { put: 0, get: 0, remove: 0 },
  failed: { put: 0, get: 0, remove: 0 },
  failCodes: {} as Record<string, number>,
  /** Reads that returned the whole value (and of which bytes). */
  readsVerified: 0,
  bytesVerified: 0,
  wrongReads: 0,
  wrongBytes: 0,
  lost: 0,
  exposedGone: 0,
  exposedIntact: 0,
  removedButPresent: 0,
  /** Puts in flight when their worker was SIGKILLed. */
  putsKilled: 0,
  workerErrors: 0,
};
const details: string[] = [];
const latency = { put: [] as number[], get: [] as number[], remove: [] as number[] };
const faults = { provider: 0, leader: 0, client: 0 };
const faultLog: string[] = [];
const takeovers: number[] = [];
let evicted = 0;
let discardedWrites = 0;
const providerKills: number[] = [];

/** Keepers per worker: acknowledged and never removed (replaced when found gone). */
const KEEPERS = 10;
const keeperPool = (): Obj[] => workers.flatMap((w) => w.own.filter((o) => o.keep && o.state === 'acked'));
/** Providers killed: their endpoint and when. */
const killed: Array<{ endpoint: string; at: number }> = [];
/**
 * May the object be gone with its providers? With its placement known: every segment holding a
 * replica of it belonged to a provider killed after its put started. Without (the placement
 * lookup failed): two providers or more were killed since.
 */
function exposed(o: Obj): boolean {
  if (o.where) return o.where.every((e) => killed.some((k) => k.endpoint === e && k.at >= o.startedAt));
  return providerKills.filter((t) => t >= o.startedAt).length >= 2;
}
let placementKnown = 0;
let placementUnknown = 0;
let placementShort = 0;
let placementRpc: RpcClient | null = null;
/** The endpoints of an object's replicas (GetReplicaList straight to the leader), or undefined. */
async function placement(key: string): Promise<string[] | undefined> {
  try {
    const r = await placementRpc!.call(Master.GetReplicaList, [key, 'default']);
    if (!r.ok) return undefined;
    return r.value.replicas.map((x) => memoryBuffer(x)?.transportEndpoint ?? '?');
  } catch {
    return undefined;
  }
}
const note = (s: string): void => {
  if (details.length < 50) details.push(s);
  log(`! ${s}`);
};
const fail = (kind: 'put' | 'get' | 'remove', code: number): void => {
  counts.failed[kind]++;
  const k = `${kind} ${code}`;
  counts.failCodes[k] = (counts.failCodes[k] ?? 0) + 1;
};

/** An acknowledged, not removed object was found missing: lost, or exposed and counted apart. */
function missing(o: Obj, how: string, removing = false): void {
  if (o.state !== 'acked' && !(removing && o.state === 'removing')) return;
  o.state = 'gone';
  if (exposed(o)) counts.exposedGone++;
  else {
    counts.lost++;
    const when = o.by === 'selftest' ? 'planted by --selftest' : `put by ${o.by} ${((Date.now() - o.startedAt) / 1000).toFixed(1)} s ago`;
    note(`LOST ${o.key} (${o.size} bytes, ${when}): ${how}`);
  }
}

function checkRead(o: Obj, got: ValueDigest, who: string): boolean {
  if (got.length === 0) return false;
  const want = patternDigest(o.seed, o.size);
  if (got.length === want.length && got.sha === want.sha) {
    counts.readsVerified++;
    counts.bytesVerified += got.length;
    return true;
  }
  counts.wrongReads++;
  counts.wrongBytes += Math.max(got.length, o.size);
  note(`WRONG read of ${o.key} by ${who}: ${got.length} bytes ${got.sha.slice(0, 12)}, want ${want.length} bytes ${want.sha.slice(0, 12)}`);
  return false;
}

// ---- processes ----

const cluster = `soak-${randomBytes(4).toString('hex')}`;
let etcd: EtcdCluster;
let metadata: MetadataServerProcess;
let etcdAddr = '';
const masters: OurMaster[] = [];
let masterOpts: OurMasterOptions;
const providers: Array<NodeStore | null> = [null, null, null];

interface Worker {
  name: string;
  kind: 'node' | 'python';
  proc: StoreClientProcess | null;
  gen: number;
  n: number;
  inFlightPut: Obj | null;
  own: Obj[];
}
const workers: Worker[] = ['node', 'python', 'node', 'python'].map((kind, i) => ({ name: `${kind[0]}${i}`, kind: kind as 'node' | 'python', proc: null, gen: 0, n: 0, inFlightPut: null, own: [] }));

const clientEnv = (): Record<string, string> => ({ MC_STORE_CLUSTER_ID: cluster });

async function startClient(kind: 'node' | 'python', segment: number): Promise<StoreClientProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return kind === 'node'
        ? await NodeStore.start({ master: etcdAddr, metadata: metadata.url, globalSegmentSize: segment, localBufferSize: 4 * MiB, env: clientEnv() })
        : await PythonStore.start({ master: etcdAddr, metadata: metadata.url, globalSegmentSize: segment, localBufferSize: 4 * MiB, env: clientEnv() });
    } catch (e) {
      // A setup while the leadership moves can fail: try again.
      if (attempt >= 10) throw e;
      await sleep(1000);
    }
  }
}

const leader = (): OurMaster | undefined => masters.find((m) => m.isLeader);

// ---- the workload ----

let stopping = false;
const pick = <T>(a: T[]): T | undefined => (a.length ? a[Math.floor(Math.random() * a.length)] : undefined);
const valueSize = (): number => Math.round(512 * Math.pow(256, Math.random())); // 512 B .. 128 KiB, log-uniform

async function oneOp(w: Worker, proc: StoreClientProcess): Promise<void> {
  if (w.own.length > 400) w.own = w.own.filter((o) => o.state === 'acked' || o.state === 'pending' || o.state === 'removing');
  const live = w.own.filter((o) => o.state === 'acked' && !o.keep);
  const keepers = w.own.filter((o) => o.keep && (o.state === 'acked' || o.state === 'pending')).length;
  const r = Math.random();
  const op = live.length > 60 || (r >= 0.85 && live.length > 0) ? 'remove' : r < 0.4 || objs.length < 10 ? 'put' : 'get';
  const t0 = performance.now();
  if (op === 'put') {
    const o: Obj = { key: `${w.name}.${w.gen}.${w.n++}`, seed: nextSeed++, size: valueSize(), by: w.name, state: 'pending', startedAt: Date.now(), ...(keepers < KEEPERS ? { keep: true } : {}) };
    objs.push(o);
    byKey.set(o.key, o);
    w.own.push(o);
    w.inFlightPut = o;
    counts.ops.put++;
    const rc = await proc.put(o.key, o.seed, o.size, { replica_num: 2 });
    w.inFlightPut = null;
    latency.put.push(performance.now() - t0);
    if (rc === 0) {
      o.state = 'acked';
      counts.ok.put++;
      o.where = await placement(o.key);
      if (!o.where) placementUnknown++;
      else {
        placementKnown++;
        if (o.where.length < 2) placementShort++;
        const names = new Set(providers.map((p) => p?.hostname));
        for (const e of o.where) if (!names.has(e) && !killed.some((k) => k.endpoint === e)) note(`${o.key} has a replica at ${e}, not a provider's endpoint`);
      }
    } else {
      o.state = 'failed';
      fail('put', rc);
      if (rc === EC.RPC_FAIL || rc === EC.RPC_TIMEOUT) await sleep(20); // no master now: no hot loop
    }
  } else if (op === 'get') {
    // Mostly keys that should be there (acknowledged, not removed); the rest any recent key.
    const recent = objs.slice(-400);
    const r2 = Math.random();
    const o = (r2 < 0.1 ? pick(keeperPool()) : r2 < 0.8 ? pick(recent.filter((x) => x.state === 'acked')) : undefined) ?? pick(recent)!;
    counts.ops.get++;
    let got: ValueDigest;
    let code = 0;
    if (proc instanceof NodeStore) {
      const g = await proc.getWithCode(o.key);
      got = g.value;
      code = g.rc;
    } else got = await proc.get(o.key);
    latency.get.push(performance.now() - t0);
    if (checkRead(o, got, w.name)) counts.ok.get++;
    else if (got.length === 0) {
      fail('get', code || -1);
      if (code === EC.RPC_FAIL || code === EC.RPC_TIMEOUT) await sleep(20);
      if (o.state === 'acked') {
        if (code === EC.OBJECT_NOT_FOUND) missing(o, `${w.name} get: OBJECT_NOT_FOUND`);
        else if (proc instanceof PythonStore && (await proc.isExist(o.key)) === 0 && o.state === 'acked') missing(o, `${w.name} get empty, is_exist 0`);
      }
    }
  } else {
    const o = pick(live)!;
    counts.ops.remove++;
    o.state = 'removing'; // others' reads may find it gone from now on
    const rc = await proc.remove(o.key, true);
    latency.remove.push(performance.now() - t0);
    if (rc === 0) {
      counts.ok.remove++;
      o.state = 'removed';
    } else {
      fail('remove', rc);
      if (rc === EC.RPC_FAIL || rc === EC.RPC_TIMEOUT) await sleep(20);
      if (rc === EC.OBJECT_NOT_FOUND) missing(o, `${w.name} remove: OBJECT_NOT_FOUND`, true);
      else o.state = 'removeUncertain';
    }
  }
}

async function runWorker(w: Worker): Promise<void> {
  while (!stopping) {
    const proc = w.proc;
    if (!proc) {
      await sleep(50);
      continue;
    }
    try {
      await oneOp(w, proc);
    } catch (e) {
      const inFlight = w.inFlightPut;
      w.inFlightPut = null;
      if (inFlight && inFlight.state === 'pending') inFlight.state = 'failed';
      if (proc.alive && w.proc === proc) {
        counts.workerErrors++;
        note(`${w.name}: ${(e as Error).message.split('\n')[0]}`);
        await sleep(200);
      }
    }
  }
}

// ---- faults ----

async function providerFault(): Promise<string> {
  const i = Math.floor(Math.random() * providers.length);
  const p = providers[i]!;
  await p.kill();
  providerKills.push(Date.now());
  killed.push({ endpoint: p.hostname, at: Date.now() });
  providers[i] = null;
  await sleep(1000);
  providers[i] = (await startClient('node', 64 * MiB)) as NodeStore;
  return `provider ${i} (${p.hostname}) killed, replaced by ${providers[i]!.hostname}`;
}

async function leaderFault(): Promise<string> {
  const l = leader();
  if (!l) return 'no leader to kill';
  evicted += (await l.metric('mooncake_master_evicted_objects_total').catch(() => 0)) ?? 0;
  discardedWrites += (await l.metric('mooncake_master_discarded_writes_total').catch(() => 0)) ?? 0;
  const other = masters.find((m) => m !== l)!;
  const t0 = Date.now();
  await l.kill();
  await other.ready(30_000);
  const took = Date.now() - t0;
  takeovers.push(took);
  const i = masters.indexOf(l);
  masters[i] = l.respawn();
  await masters[i]!.standby(30_000);
  return `leader killed; the standby led after ${took} ms`;
}

let clientTurn = 0;
async function clientFault(): Promise<string> {
  const kind = clientTurn++ % 2 ? 'python' : 'node';
  const w = pick(workers.filter((x) => x.kind === kind && x.proc))!;
  const proc = w.proc!;
  const deadline = Date.now() + 5000;
  while (!w.inFlightPut && Date.now() < deadline) await sleep(1);
  const inFlight = w.inFlightPut;
  await sleep(Math.random() * 3);
  const pendingAtKill = inFlight !== null && inFlight.state === 'pending';
  w.proc = null;
  await proc.kill();
  if (pendingAtKill && inFlight.state !== 'acked') counts.putsKilled++;
  w.gen++;
  w.n = 0;
  w.proc = await startClient(kind, 0);
  return `${kind} worker ${w.name} killed${pendingAtKill ? ` with the put of ${inFlight.key} (${inFlight.size} bytes) in flight` : ''}, restarted`;
}

// ---- the run ----

const pct = (a: number[], p: number): number => {
  if (a.length === 0) return 0;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

async function main(): Promise<number> {
  const started = Date.now();
  const load0 = os.loadavg();
  etcd = await EtcdCluster.start(etcdBin.path, 1);
  metadata = await MetadataServerProcess.start();
  etcdAddr = `etcd://${etcd.members.map((m) => `127.0.0.1:${m.clientPort}`).join(';')}`;
  masterOpts = { ha: etcd.connString, cluster, clientTtlS: 5, haLeaseTtlS: 2, extraArgs: ['--put_start_discard_timeout_sec=2', '--put_start_release_timeout_sec=5'] };
  masters.push(await OurMaster.start(masterOpts));
  masters.push(OurMaster.spawn(masterOpts));
  await masters[1]!.standby();
  for (let i = 0; i < providers.length; i++) providers[i] = (await startClient('node', 64 * MiB)) as NodeStore;
  for (const w of workers) w.proc = await startClient(w.kind, 0);
  const locator = masterLocator(etcdAddr, { ...process.env, ...clientEnv() });
  placementRpc = new RpcClient({ host: '', port: 0, connectTimeoutMs: 5000, callTimeoutMs: 5000, resolve: () => locator.resolve() });
  log(`store soak: ${args.minutes} min, a fault every ${args['fault-every']} s; etcd, 2 masters (--ha), 3 providers, workers ${workers.map((w) => `${w.name} (${w.kind})`).join(', ')}; load ${load0.map((x) => x.toFixed(2)).join(' ')}`);

  if (args.selftest) {
    // A key acknowledged in the registry but never written, and one written with another seed than recorded.
    // Never exposed (no provider kill comes after a start in the far future), so a loss counts.
    const ghost: Obj = { key: 'selftest-ghost', seed: 1, size: 1000, by: 'selftest', state: 'acked', startedAt: Number.MAX_SAFE_INTEGER };
    const liar: Obj = { key: 'selftest-liar', seed: 2, size: 1000, by: 'selftest', state: 'acked', startedAt: Number.MAX_SAFE_INTEGER };
    if ((await workers[0]!.proc!.put(liar.key, 3, 1000, { replica_num: 2 })) !== 0) throw new Error('selftest: the put failed');
    for (const o of [ghost, liar]) {
      objs.push(o);
      byKey.set(o.key, o);
    }
  }

  const loops = workers.map((w) => runWorker(w));
  const faultsUntil = started + runMs * 0.8;
  const kinds = [providerFault, leaderFault, clientFault] as const;
  const names = ['provider', 'leader', 'client'] as const;
  let k = 0;
  let nextFault = Date.now() + faultEveryMs;
  let lastProgress = Date.now();
  while (Date.now() < started + runMs) {
    await sleep(200);
    if (Date.now() - lastProgress > 30_000) {
      lastProgress = Date.now();
      log(`  ${((Date.now() - started) / 60_000).toFixed(1)} min: ${counts.ops.put + counts.ops.get + counts.ops.remove} ops, ${faults.provider + faults.leader + faults.client} faults, wrong ${counts.wrongReads}, lost ${counts.lost}`);
    }
    if (Date.now() >= nextFault && Date.now() < faultsUntil) {
      const i = k++ % kinds.length;
      const t0 = Date.now();
      try {
        const what = await kinds[i]!();
        faults[names[i]!]++;
        faultLog.push(`${((t0 - started) / 1000).toFixed(1)} s: ${what}`);
        log(`  fault at ${((t0 - started) / 1000).toFixed(1)} s: ${what}`);
      } catch (e) {
        note(`fault ${names[i]} failed: ${(e as Error).message.split('\n')[0]}`);
      }
      nextFault = Date.now() + faultEveryMs;
    }
  }
  stopping = true;
  await Promise.all(loops);
  const load1 = os.loadavg();

  // ---- the final check, once every fault is over: everything acknowledged and not removed reads back whole ----
  await sleep(6000); // past the client TTL and the put release timeout
  const checker = new MooncakeDistributedStore({ env: { ...process.env, MC_TCP_BIND_ADDRESS: '127.0.0.1', ...clientEnv() } });
  if ((await checker.setup('127.0.0.1', metadata.url, 0, 4 * MiB, 'tcp', '', etcdAddr)) !== 0) throw new Error(`checker setup: ${checker.getLastError()?.message}`);
  let finalChecked = 0;
  let removalsChecked = 0;
  // Removals: the last 5000 acknowledged ones (one is_exist each) must have stuck.
  const lastRemoved = new Set(objs.filter((o) => o.state === 'removed').slice(-5000));
  for (const o of objs) {
    if (o.state === 'acked') {
      let ok = false;
      let code = 0;
      for (let attempt = 0; attempt < 3 && !ok; attempt++) {
        const v = await checker.get(o.key);
        finalChecked++;
        if (v.length > 0) {
          ok = true;
          checkRead(o, { length: v.length, sha: createHash('sha256').update(v).digest('hex') }, 'final check');
        } else {
          code = checker.getLastError()?.returnCode ?? 0;
          if (code === EC.OBJECT_NOT_FOUND) break;
          await sleep(500);
        }
      }
      if (!ok) missing(o, `final check: ${code}`);
      else if (exposed(o)) counts.exposedIntact++;
    } else if (o.state !== 'removed' && o.state !== 'gone') {
      // A put or a remove of unknown outcome (failed, or its worker killed): the whole value or nothing.
      const v = await checker.get(o.key);
      if (v.length > 0) checkRead(o, { length: v.length, sha: createHash('sha256').update(v).digest('hex') }, 'final check');
    } else if (lastRemoved.has(o)) {
      // An acknowledged removal: it must stay removed.
      removalsChecked++;
      if ((await checker.isExist(o.key)) === 1) {
        counts.removedButPresent++;
        note(`REMOVED BUT PRESENT ${o.key}`);
      }
    }
  }
  await checker.close();
  placementRpc?.close();
  locator.close();
  const l = leader();
  const health = l ? await l.health().catch(() => null) : null;
  if (l) {
    evicted += (await l.metric('mooncake_master_evicted_objects_total').catch(() => 0)) ?? 0;
    discardedWrites += (await l.metric('mooncake_master_discarded_writes_total').catch(() => 0)) ?? 0;
  }

  const summary = {
    minutes: Number(args.minutes),
    faultEverySeconds: Number(args['fault-every']),
    loadAverageBefore: load0.map((x) => Number(x.toFixed(2))),
    loadAverageAfter: load1.map((x) => Number(x.toFixed(2))),
    ops: counts.ops,
    ok: counts.ok,
    failed: counts.failed,
    failCodes: counts.failCodes,
    acked: counts.ok.put,
    readsVerified: counts.readsVerified,
    bytesVerified: counts.bytesVerified,
    finalChecked,
    removalsChecked,
    wrongReads: counts.wrongReads,
    wrongBytes: counts.wrongBytes,
    lost: counts.lost,
    exposedGone: counts.exposedGone,
    exposedIntact: counts.exposedIntact,
    placement: { known: placementKnown, fewerThanTwo: placementShort, unknown: placementUnknown },
    removedButPresent: counts.removedButPresent,
    putsKilled: counts.putsKilled,
    workerErrors: counts.workerErrors,
    faults,
    takeoverMs: takeovers,
    evictedObjects: evicted,
    discardedWrites,
    writesLeftInProgress: health ? Number(health['writingObjects']) : null,
    latencyMs: Object.fromEntries(Object.entries(latency).map(([k2, a]) => [k2, { p50: +pct(a, 50).toFixed(2), p99: +pct(a, 99).toFixed(2), max: +pct(a, 100).toFixed(2) }])),
    details,
  };
  const pass =
    summary.wrongBytes === 0 &&
    summary.lost === 0 &&
    summary.removedButPresent === 0 &&
    summary.evictedObjects === 0 &&
    faults.provider > 0 &&
    faults.leader > 0 &&
    faults.client > 0 &&
    counts.ok.put > 0;
  if (!args.json) {
    console.log(`\nops: put ${counts.ops.put} (${counts.ok.put} ok), get ${counts.ops.get} (${counts.ok.get} whole), remove ${counts.ops.remove} (${counts.ok.remove} ok)`);
    console.log(`failures by code: ${JSON.stringify(counts.failCodes)}`);
    console.log(`faults: provider ${faults.provider}, leader ${faults.leader} (takeover ${takeovers.join('/')} ms), client ${faults.client} (${counts.putsKilled} with a put in flight)`);
    console.log(`reads verified: ${counts.readsVerified} (${(counts.bytesVerified / MiB).toFixed(1)} MiB); final check ${finalChecked} reads`);
    console.log(`wrong reads: ${counts.wrongReads} (${counts.wrongBytes} bytes)`);
    console.log(`lost acknowledged objects: ${counts.lost}; exposed (every replica's provider killed since the put) gone ${counts.exposedGone}, intact ${counts.exposedIntact}`);
    console.log(`placement of acknowledged puts: ${placementKnown} known (${placementShort} with fewer than 2 replicas), ${placementUnknown} unknown (the 2-kills rule)`);
    console.log(`removed but present: ${counts.removedButPresent} (of ${removalsChecked} removals checked); evicted: ${evicted}; puts given up by masters: ${discardedWrites}; writes left in progress: ${summary.writesLeftInProgress}`);
    console.log(`latency ms: ${JSON.stringify(summary.latencyMs)}`);
    console.log(`load average: before ${summary.loadAverageBefore.join(' ')}, after ${summary.loadAverageAfter.join(' ')}`);
    console.log(pass ? 'PASS' : 'FAIL');
  } else console.log(JSON.stringify({ ...summary, pass }));
  return pass ? 0 : 1;
}

async function shutdown(): Promise<void> {
  stopping = true;
  await Promise.all(workers.map((w) => w.proc?.kill()));
  await Promise.all(providers.map((p) => p?.stop().catch(() => undefined)));
  await Promise.all(masters.map((m) => m.kill()));
  await metadata?.stop();
  await etcd?.stop();
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.error(`store soak failed: ${(e as Error).stack ?? String(e)}`);
} finally {
  await shutdown();
}
process.exit(code);
