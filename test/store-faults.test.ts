/**
 * Store faults (issue 21), with real processes: our master (`transfer-engine master`), our
 * store clients in child processes (test/store-harness/node-store.ts) and in this one, the
 * pinned wheel's Python store clients (test/store-harness/python-store.ts), real etcd for
 * `--ha`. Every value is pattern(seed, length); a read is right only if it is the whole value,
 * byte for byte (SHA-256), and a failure must be a typed code within a bounded time.
 *
 *  - a client SIGKILLed in the middle of a put (PutStart done, half the bytes written, no
 *    PutEnd; and real puts killed at random moments): readers get "not ready" / "not found"
 *    or the complete object, never a part of it; the master gives the write up after
 *    --put_start_release_timeout_sec (the bug fixed with this file: it kept it for good);
 *  - a provider SIGKILLed: gets of its only replica fail typed at once, gets of objects with a
 *    second replica succeed byte-exact; after --client_ttl its objects are OBJECT_NOT_FOUND;
 *  - the master SIGKILLed without --ha: typed errors while it is down, no hang; restarted empty
 *    (as Mooncake's), or with --data_dir holding every acknowledged object;
 *  - the leader SIGKILLed with --ha under load: the standby takes over, every acknowledged
 *    object reads back byte-exact from Node and Python;
 *  - the network to the master blackholed longer than the client's RPC timeout (30 s), then
 *    restored: RPC_TIMEOUT during, a remount and working calls after.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import path from 'node:path';
import { MooncakeDistributedStore, ReplicateConfig, StoreErrorCode as EC } from '../src/store.js';
import { MasterService } from '../src/master/service.js';
import { DEFAULT_MASTER_CONFIG } from '../src/master/config.js';
import { ReplicateConfig as RC } from '../src/store/replicate-config.js';
import type { Segment, UUID } from '../src/store/master-protocol.js';
import { ensureInteropEnv } from './interop/mooncake.js';
import { EtcdCluster, MetadataServerProcess, requireServer } from './servers.js';
import { FaultProxy, PASS } from './fault-proxy.js';
import { MooncakeMaster, sleep } from './store-harness/master.js';
import { NodeStore } from './store-harness/node-store.js';
import { OurMaster } from './store-harness/our-master.js';
import { PythonStore, pattern, patternDigest, type ValueDigest } from './store-harness/python-store.js';

const skip = ensureInteropEnv();
if (skip) console.warn(`\n*** SKIPPING store faults: ${skip} ***\n`);
const etcdBin = requireServer('etcd');

const MiB = 1 << 20;
const ENV = { ...process.env, MC_TCP_BIND_ADDRESS: '127.0.0.1' };
const EMPTY = { length: 0, sha: createHash('sha256').update(Buffer.alloc(0)).digest('hex') };
const digest = (b: Uint8Array): ValueDigest => ({ length: b.length, sha: createHash('sha256').update(b).digest('hex') });

async function until(what: string, ms: number, cond: () => Promise<boolean>): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
  return Date.now() - t0;
}

async function timed<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  const value = await run();
  return { value, ms: Date.now() - t0 };
}

/** An in-process client of ours: `segment` bytes for everybody's replicas (0: none). */
async function nodeClient(masterAddr: string, metadata: string, segment: number, extraEnv: Record<string, string> = {}): Promise<MooncakeDistributedStore> {
  const s = new MooncakeDistributedStore({ env: { ...ENV, ...extraEnv } });
  const rc = await s.setup('127.0.0.1', metadata, segment, 16 * MiB, 'tcp', '', masterAddr);
  assert.equal(rc, 0, `setup: ${s.getLastError()?.message}`);
  return s;
}

/** A read that is either a failure or the whole value, never anything else. */
function assertNothingOrWhole(got: ValueDigest, seed: number, length: number, what: string): 'none' | 'whole' {
  if (got.length === 0) return 'none';
  assert.deepEqual(got, patternDigest(seed, length), `${what}: a read returned bytes that are not the whole value`);
  return 'whole';
}

describe('store faults: the master gives up writes nobody ends (MasterService, injected clock)', () => {
  const uuid = (n: number): UUID => ({ first: BigInt(n), second: 7n });
  const seg: Segment = { id: uuid(100), name: 'seg', base: 0x7000_0000_0000n, size: BigInt(64 * MiB), teEndpoint: 'te:1', protocol: 'tcp', hostId: '' };

  test('a put whose writer never ends it goes after --put_start_release_timeout_sec, its space freed; an abandoned upsert to new space keeps the old value', () => {
    const clock = { t: 0 };
    const svc = new MasterService({ ...DEFAULT_MASTER_CONFIG, clientTtlMs: 1e12, putStartDiscardMs: 30_000, putStartReleaseMs: 600_000 }, () => clock.t);
    assert.ok(svc.mountSegment(seg, uuid(1)).ok);
    const cfg = new RC().toWire();
    assert.ok(svc.putStart(uuid(2), 'dead-writer', BigInt(MiB), cfg, 'default').ok);
    assert.ok(svc.putStart(uuid(3), 'old', BigInt(MiB), cfg, 'default').ok);
    assert.ok(svc.putEnd(uuid(3), { key: 'old', objectChecksum: null }, 'default').ok);
    assert.ok(svc.upsertStart(uuid(2), 'old', BigInt(2 * MiB), cfg, 'default').ok, 'an upsert to new space (another size)');
    const busy = svc.stats;
    assert.equal(busy.writingObjects, 2);
    assert.equal(busy.usedBytes, 4 * MiB);
    assert.deepEqual(svc.getReplicaList('dead-writer', 'default'), { ok: false, error: EC.REPLICA_IS_NOT_READY });

    clock.t = 599_000; // past the discard timeout, before the release timeout: still a write in progress
    svc.sweep();
    assert.equal(svc.stats.writingObjects, 2);
    clock.t = 661_000; // past the release timeout and the scan interval (a tenth of the timeout, at most 60 s)
    svc.sweep();
    const s = svc.stats;
    assert.equal(s.writingObjects, 0, 'no write left in progress');
    assert.equal(s.objects, 1, 'the abandoned put went; the upserted key stands');
    assert.equal(s.usedBytes, MiB, "only the old value's space is used");
    assert.equal(svc.counters.discardedWrites, 2);
    assert.deepEqual(svc.getReplicaList('dead-writer', 'default'), { ok: false, error: EC.OBJECT_NOT_FOUND });
    const old = svc.getReplicaList('old', 'default');
    assert.ok(old.ok && old.value.replicas.length === 1, 'the old value of the abandoned upsert is readable');
    assert.ok(svc.putStart(uuid(4), 'dead-writer', BigInt(MiB), cfg, 'default').ok, 'the key can be written again');
  });
});

describe('store faults: real processes', { skip: skip ?? false }, () => {
  test('a client SIGKILLed mid-put: readers never see a part of the object; the master gives the write up', async (t) => {
    const master = await MooncakeMaster.start({ kind: 'ours', clientTtlS: 3, extraArgs: ['--put_start_discard_timeout_sec=2', '--put_start_release_timeout_sec=5'] });
    const health = async (): Promise<Record<string, number>> => (await fetch(`http://127.0.0.1:${master.metricsPort}/health`)).json() as Promise<Record<string, number>>;
    const provider = await NodeStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 128 * MiB });
    const reader = await nodeClient(master.address, master.metadataUrl, 0);
    const py = await PythonStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 0 });
    const writers: NodeStore[] = [];
    try {
      // 1. Deterministic: PutStart accepted, half of the 8 MiB written into the replica, then SIGKILL.
      const w = await NodeStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 0 });
      writers.push(w);
      const partial = await w.putPartial('half', 11, 8 * MiB, 0.5, { preferred_segments: [provider.hostname] });
      assert.equal(partial.rc, 0);
      assert.equal(partial.written, 4 * MiB);
      await w.kill();
      const killedAt = Date.now();
      assert.equal((await health())['writingObjects'], 1);
      assert.equal((await reader.get('half')).length, 0);
      assert.equal(reader.getLastError()?.returnCode, EC.REPLICA_IS_NOT_READY, 'the object being written is not listed');
      assert.deepEqual(await py.get('half'), EMPTY);
      assert.equal(await py.isExist('half'), 0);
      assert.equal(await reader.isExist('half'), 0);
      const gone = await until('the master to give the write up', 15_000, async () => (await health())['writingObjects'] === 0);
      t.diagnostic(`the dead writer's put was given up ${Date.now() - killedAt} ms after the SIGKILL (release timeout 5 s; polled ${gone} ms)`);
      const h = await health();
      assert.equal(h['objects'], 0);
      assert.equal(h['usedBytes'], 0, 'its space is free again');
      assert.equal((await reader.get('half')).length, 0);
      assert.equal(reader.getLastError()?.returnCode, EC.OBJECT_NOT_FOUND);
      assert.equal(await reader.put('half', pattern(12, 8 * MiB)), 0, 'the key is free for a new put');
      assert.deepEqual(await py.get('half'), patternDigest(12, 8 * MiB));

      // 2. Real puts of 24 MiB, killed at random moments, while two readers poll the key.
      const outcomes: string[] = [];
      for (let i = 0; i < 4; i++) {
        const key = `killed-${i}`;
        const seed = 100 + i;
        const wi = await NodeStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 0, localBufferSize: 32 * MiB });
        writers.push(wi);
        let polling = true;
        const seen = { none: 0, whole: 0 };
        const poll = (async () => {
          while (polling) {
            seen[assertNothingOrWhole(digest(await reader.get(key)), seed, 24 * MiB, `${key} (node)`)]++;
            seen[assertNothingOrWhole(await py.get(key), seed, 24 * MiB, `${key} (python)`)]++;
          }
        })();
        const put = wi.put(key, seed, 24 * MiB, { preferred_segments: [provider.hostname] }).catch(() => 'killed');
        await sleep(5 + Math.floor(Math.random() * 40));
        await wi.kill();
        const r = await put;
        await sleep(300);
        polling = false;
        await poll;
        outcomes.push(`${key}: put ${String(r)}, reads none ${seen.none} whole ${seen.whole}`);
      }
      t.diagnostic(outcomes.join('; '));
      await until('every killed write to be given up or complete', 15_000, async () => (await health())['writingObjects'] === 0);
      for (let i = 0; i < 4; i++) {
        const key = `killed-${i}`;
        const state = assertNothingOrWhole(await py.get(key), 100 + i, 24 * MiB, key);
        if (state === 'none') assert.equal(await reader.isExist(key), 0, `${key}: absent, not half there`);
      }
    } finally {
      for (const w of writers) await w.kill();
      await reader.close();
      await py.stop();
      await provider.stop();
      await master.stop();
    }
  });

  test('a provider SIGKILLed: its only replicas fail typed at once, second replicas serve byte-exact; after client_ttl its objects are not found', async (t) => {
    const master = await MooncakeMaster.start({ kind: 'ours', clientTtlS: 3 });
    const pa = await NodeStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 64 * MiB });
    const pb = await NodeStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 64 * MiB });
    const pc = await PythonStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 64 * MiB });
    const node = await nodeClient(master.address, master.metadataUrl, 0);
    const py = await PythonStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 0 });
    try {
      const objs: Array<{ key: string; seed: number; size: number; copies: number }> = [];
      for (let i = 0; i < 4; i++) {
        const size = (i + 1) * 700_000;
        objs.push({ key: `one-${i}`, seed: 200 + i, size, copies: 1 });
        assert.equal(await node.put(`one-${i}`, pattern(200 + i, size), new ReplicateConfig({ preferredSegments: [pa.hostname] })), 0);
        objs.push({ key: `two-${i}`, seed: 300 + i, size, copies: 2 });
        assert.equal(await node.put(`two-${i}`, pattern(300 + i, size), new ReplicateConfig({ replicaNum: 2, preferredSegments: [pa.hostname, i % 2 ? pb.hostname : pc.hostname] })), 0);
      }
      for (const o of objs) assert.deepEqual(await py.get(o.key), patternDigest(o.seed, o.size), `${o.key} before the kill`);

      await pa.kill();
      const killedAt = Date.now();
      const codes = new Set<number>();
      let slowest = 0;
      for (const o of objs) {
        const { value, ms } = await timed(() => node.get(o.key));
        slowest = Math.max(slowest, ms);
        if (o.copies === 2) assert.deepEqual(digest(value), patternDigest(o.seed, o.size), `${o.key}: read from its other replica: ${node.getLastError()?.message}`);
        else {
          assert.equal(value.length, 0, `${o.key}: its only replica died`);
          codes.add(node.getLastError()!.returnCode);
        }
      }
      t.diagnostic(`gets right after the kill: slowest ${slowest} ms; codes of the lost ones ${[...codes].join(',')}`);
      assert.ok(slowest < 5000, `a get took ${slowest} ms after the provider died`);
      for (const c of codes) assert.ok(c === EC.TRANSFER_FAIL || c === EC.OBJECT_NOT_FOUND, `code ${c}`);
      // Python picks a replica itself: it may try the dead one until the master drops it; never wrong bytes.
      const pySeen = { none: 0, whole: 0 };
      for (const o of objs) pySeen[assertNothingOrWhole(await py.get(o.key), o.seed, o.size, `${o.key} (python, right after the kill)`)]++;
      t.diagnostic(`python right after the kill: ${pySeen.whole} read whole, ${pySeen.none} failed`);

      await until('the master to drop the dead provider', 15_000, async () => (await node.isExist('one-0')) === 0);
      t.diagnostic(`the dead provider's objects were dropped ${Date.now() - killedAt} ms after the kill (client_ttl 3 s)`);
      for (const o of objs) {
        if (o.copies === 1) {
          assert.equal((await node.get(o.key)).length, 0);
          assert.equal(node.getLastError()?.returnCode, EC.OBJECT_NOT_FOUND, o.key);
          assert.equal(await py.isExist(o.key), 0);
        } else {
          assert.deepEqual(digest(await node.get(o.key)), patternDigest(o.seed, o.size), o.key);
          assert.deepEqual(await py.get(o.key), patternDigest(o.seed, o.size), `${o.key} (python)`);
        }
      }
      // The store goes on: new puts land on the providers left.
      assert.equal(await node.put('after', pattern(400, MiB), new ReplicateConfig({ replicaNum: 2 })), 0);
      assert.deepEqual(await py.get('after'), patternDigest(400, MiB));
    } finally {
      await node.close();
      await py.stop();
      await pc.stop();
      await pb.stop();
      await pa.kill();
      await master.stop();
    }
  });

  for (const durable of [false, true]) {
    test(`the master SIGKILLed without --ha${durable ? ', with --data_dir' : ''}: typed errors while it is down, no hang; restarted, ${durable ? 'every acknowledged object is back' : 'it is empty (as Mooncake) and clients remount'}`, async (t) => {
      const dir = durable ? mkdtempSync(path.join(os.tmpdir(), 'te-store-faults-')) : '';
      const master = await MooncakeMaster.start({ kind: 'ours', clientTtlS: 5, extraArgs: durable ? [`--data_dir=${dir}`] : [] });
      const node = await nodeClient(master.address, master.metadataUrl, 32 * MiB);
      const py = await PythonStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 32 * MiB });
      try {
        for (let i = 0; i < 3; i++) {
          assert.equal(await node.put(`n-${i}`, pattern(500 + i, MiB + i), new ReplicateConfig({ preferredSegments: [i % 2 ? py.hostname : node.getHostname()] })), 0);
          assert.equal(await py.put(`p-${i}`, 600 + i, MiB + i), 0);
        }
        master.kill('SIGKILL');
        await until('the master to die', 5000, async () => !master.alive);
        const calls = [
          ['node put', () => node.put('down', pattern(1, 100))],
          ['node get', async () => ((await node.get('n-0')).length === 0 ? node.getLastError()!.returnCode : 0)],
          ['node isExist', () => node.isExist('n-0')],
          ['node remove', () => node.remove('n-0')],
          ['python put', () => py.put('down', 1, 100)],
          ['python get', async () => ((await py.get('p-0')).length === 0 ? -1 : 0)],
        ] as const;
        const seen: string[] = [];
        for (const [what, run] of calls) {
          const { value, ms } = await timed(run);
          seen.push(`${what} ${value} in ${ms} ms`);
          assert.ok(value < 0, `${what} while the master is down: ${value}`);
          assert.ok(ms < 5000, `${what} took ${ms} ms`);
        }
        assert.equal(await node.put('down', pattern(1, 100)), EC.RPC_FAIL);
        t.diagnostic(seen.join('; '));

        await master.restart();
        const back = await until('a put after the restart', 20_000, async () => (await node.put('after', pattern(700, 1000), new ReplicateConfig({ preferredSegments: [node.getHostname()] }))) === 0);
        t.diagnostic(`a put worked ${back} ms after the restarted master listened`);
        assert.deepEqual(await py.get('after'), patternDigest(700, 1000));
        for (let i = 0; i < 3; i++) {
          if (durable) {
            assert.deepEqual(digest(await node.get(`p-${i}`)), patternDigest(600 + i, MiB + i), `p-${i}: ${node.getLastError()?.message}`);
            assert.deepEqual(await py.get(`n-${i}`), patternDigest(500 + i, MiB + i), `n-${i}`);
          } else {
            assert.equal(await node.isExist(`n-${i}`), 0);
            assert.equal(await py.isExist(`p-${i}`), 0);
          }
        }
      } finally {
        await node.close();
        await py.stop();
        await master.stop();
        if (dir) rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  describe('with --ha', { skip: etcdBin.skip }, () => {
    let etcd: EtcdCluster;
    let metadata: MetadataServerProcess;
    before(async () => {
      etcd = await EtcdCluster.start(etcdBin.path, 1);
      metadata = await MetadataServerProcess.start();
    });
    after(async () => {
      await metadata?.stop();
      await etcd?.stop();
    });

    test('the leader SIGKILLed under load: the standby takes over, every acknowledged object reads back byte-exact, no call hangs', async (t) => {
      const cluster = `sf-${process.pid}`;
      const etcdAddr = `etcd://${etcd.members.map((m) => `127.0.0.1:${m.clientPort}`).join(';')}`;
      // A put whose PutStart the dead leader committed and whose PutEnd never came is given up after 3 s.
      const opts = { ha: etcd.connString, cluster, clientTtlS: 5, extraArgs: ['--put_start_discard_timeout_sec=1', '--put_start_release_timeout_sec=3'] };
      const a = await OurMaster.start(opts);
      const b = OurMaster.spawn(opts);
      await b.standby();
      const node = await nodeClient(etcdAddr, metadata.url, 48 * MiB, { MC_STORE_CLUSTER_ID: cluster });
      const py = await PythonStore.start({ master: etcdAddr, metadata: metadata.url, globalSegmentSize: 48 * MiB, env: { MC_STORE_CLUSTER_ID: cluster } });
      const acked: Array<{ key: string; seed: number; size: number }> = [];
      const failed: Array<{ key: string; seed: number; size: number }> = [];
      let slowest = 0;
      const codes = new Map<number, number>();
      let stop = false;
      const load = async (who: 'node' | 'python'): Promise<void> => {
        for (let i = 0; !stop; i++) {
          const key = `${who}-${i}`;
          const seed = (who === 'node' ? 10_000 : 20_000) + i;
          const size = 4096 + ((i * 7919) % 300_000);
          const { value: rc, ms } = await timed(() =>
            who === 'node' ? node.put(key, pattern(seed, size), new ReplicateConfig({ replicaNum: 2 })) : py.put(key, seed, size, { replica_num: 2 }),
          );
          slowest = Math.max(slowest, ms);
          if (rc === 0) acked.push({ key, seed, size });
          else {
            failed.push({ key, seed, size });
            codes.set(rc, (codes.get(rc) ?? 0) + 1);
            await sleep(50);
          }
        }
      };
      try {
        const running = [load('node'), load('python')];
        await until('some acknowledged puts', 10_000, async () => acked.length >= 20);
        const killedAt = Date.now();
        await a.kill();
        await b.ready(20_000);
        const tookOver = Date.now() - killedAt;
        const ackedAtKill = acked.length;
        await until('puts acknowledged by the new leader', 30_000, async () => acked.length >= ackedAtKill + 20);
        stop = true;
        await Promise.all(running);
        t.diagnostic(`standby led ${tookOver} ms after the SIGKILL; ${acked.length} puts acknowledged, ${failed.length} failed (codes ${JSON.stringify([...codes])}), slowest call ${slowest} ms`);
        assert.ok(slowest < 15_000, `a put took ${slowest} ms`);
        for (const c of codes.keys()) assert.ok(c < 0, `a failed put returned ${c}`);
        for (const o of acked) {
          const ok = (await until(`${o.key} to read back`, 30_000, async () => (await py.get(o.key)).length > 0).catch((e: unknown) => e)) as unknown;
          assert.equal(typeof ok, 'number', `${o.key}: acknowledged, unreadable after the failover: ${String(ok)}`);
          assert.deepEqual(await py.get(o.key), patternDigest(o.seed, o.size), `${o.key} (python)`);
          assert.deepEqual(digest(await node.get(o.key)), patternDigest(o.seed, o.size), `${o.key} (node): ${node.getLastError()?.message}`);
        }
        for (const o of failed) assertNothingOrWhole(await py.get(o.key), o.seed, o.size, `${o.key}, whose put failed`);
        const h = await b.health();
        t.diagnostic(`new leader: ${JSON.stringify(h)}`);
        await until('the writes the dead leader left unfinished to be given up', 15_000, async () => (await b.health())['writingObjects'] === 0);
        t.diagnostic(`given up by the new leader: ${String(await b.metric('mooncake_master_discarded_writes_total'))}`);
      } finally {
        stop = true;
        await node.close();
        await py.stop();
        await a.kill();
        await b.kill();
      }
    });
  });

  test('the network to the master blackholed longer than the client timeout, then restored: RPC_TIMEOUT during, remount and working calls after', async (t) => {
    const master = await MooncakeMaster.start({ kind: 'ours', clientTtlS: 5 });
    const proxy = await FaultProxy.start({ targetHost: '127.0.0.1', targetPort: master.rpcPort });
    const viaProxy = `127.0.0.1:${proxy.port}`;
    const provider = await NodeStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 32 * MiB });
    const node = await nodeClient(viaProxy, master.metadataUrl, 16 * MiB);
    const py = await PythonStore.start({ master: viaProxy, metadata: master.metadataUrl, globalSegmentSize: 0 });
    try {
      assert.equal(await node.put('on-provider', pattern(800, MiB), new ReplicateConfig({ preferredSegments: [provider.hostname] })), 0);
      assert.equal(await node.put('on-cut-client', pattern(801, MiB), new ReplicateConfig({ preferredSegments: [node.getHostname()] })), 0);
      assert.deepEqual(await py.get('on-cut-client'), patternDigest(801, MiB));

      const loop = monitorEventLoopDelay({ resolution: 20 });
      loop.enable();
      proxy.setMode({ kind: 'blackhole' });
      const cutAt = Date.now();
      const [put, get, pyGet] = await Promise.all([
        timed(() => node.put('during', pattern(802, 1000))),
        timed(async () => ((await node.get('on-provider')).length === 0 ? node.getLastError()!.returnCode : 0)),
        timed(() => py.get('on-provider')),
      ]);
      loop.disable();
      t.diagnostic(`during the cut: node put ${put.value} after ${put.ms} ms, node get ${get.value} after ${get.ms} ms, python get ${pyGet.value.length} bytes after ${pyGet.ms} ms (this process's longest event-loop stall: ${Math.round(loop.max / 1e6)} ms; load ${os.loadavg()[0]!.toFixed(1)})`);
      for (const c of [put, get]) {
        assert.equal(c.value, EC.RPC_TIMEOUT);
        assert.ok(c.ms >= 29_000 && c.ms < 40_000, `failed after ${c.ms} ms (the client's RPC timeout is 30 s)`);
      }
      assertNothingOrWhole(pyGet.value, 800, MiB, 'python get during the cut');
      // The master did not hear from the cut client for its client_ttl: it dropped its segment.
      assert.deepEqual(await provider.get('on-cut-client'), EMPTY);
      assert.equal(await provider.isExist('on-cut-client'), 0);
      await sleep(Math.max(0, 33_000 - (Date.now() - cutAt)));
      proxy.setMode(PASS);
      const restoredAt = Date.now();
      const back = await until('a put through the restored link', 20_000, async () => (await node.put('after', pattern(803, MiB), new ReplicateConfig({ preferredSegments: [node.getHostname()] }))) === 0);
      t.diagnostic(`cut for ${restoredAt - cutAt} ms; a put worked ${back} ms after the link came back`);
      assert.deepEqual(await provider.get('after'), patternDigest(803, MiB), 'the client remounted its segment: others read from it');
      assert.deepEqual(digest(await node.get('on-provider')), patternDigest(800, MiB));
      await until('python to work again', 30_000, async () => (await py.get('on-provider')).length > 0);
      assert.deepEqual(await py.get('on-provider'), patternDigest(800, MiB));
      assert.equal(await node.isExist('on-cut-client'), 0, "its segment's old objects went with the TTL");
      // 'during' never reached the master, or reached it after the link came back: never a half object.
      assertNothingOrWhole(await py.get('during'), 802, 1000, 'during');
    } finally {
      await node.close();
      await py.stop();
      await provider.stop();
      await proxy.stop();
      await master.stop();
    }
  });
});
