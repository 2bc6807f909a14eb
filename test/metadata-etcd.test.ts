/**
 * etcd metadata against real etcd servers (Debian etcd-server) on free
 * loopback ports: two engines in separate processes, MC_METADATA_CLUSTER_ID,
 * a peer restarted on new ports, the opt-in lease, etcd down at init and
 * mid-run, an endpoint list whose first member is dead, and a three-member
 * cluster losing a member while transfers and metadata traffic go on.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TransferEngine, TransferOpcode, TaskStatus, type TransferRequest } from '../src/core.js';
import { EtcdMetadataStore } from '../src/metadata/etcd.js';
import { spawnPeer, sha256, type PeerProcess } from './helpers.js';
import { patternBuffer } from './pattern.js';
import { EtcdCluster, freePort, requireServer } from './servers.js';

const etcd = requireServer('etcd');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const SIZE = 2 * 1024 * 1024;
/** One address base for a peer and its restart, so the restart registers at the same addresses. */
const FIXED_BASE = { TE_ADDRESS_BASE: '0x200000000000' };
const CLUSTER_ID = 'te-test';
const ENV = { TE_METADATA_TIMEOUT_MS: '2000', MC_METADATA_CLUSTER_ID: CLUSTER_ID };

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`${what} took more than ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

async function eventually(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(100);
  }
}

class Initiator {
  readonly local = Buffer.alloc(SIZE);
  addr = 0;
  constructor(readonly engine: TransferEngine) {}
  static async start(conn: string, name: string, env: Record<string, string> = {}): Promise<Initiator> {
    const e = new TransferEngine({ metadataServer: conn, env: { ...process.env, ...ENV, ...env } });
    await e.init(name, '127.0.0.1');
    const i = new Initiator(e);
    i.addr = e.registerLocalMemory(i.local);
    await e.flushMetadata();
    return i;
  }
  async run(reqs: TransferRequest[]): Promise<TaskStatus[]> {
    const bid = this.engine.allocateBatchID(reqs.length);
    this.engine.submitTransfer(bid, reqs);
    const st = await within(this.engine.waitBatch(bid), 20_000, 'batch');
    this.engine.freeBatchID(bid);
    return st.map((s) => s.status);
  }
  read(seg: number, remote: number, length = SIZE): Promise<TaskStatus[]> {
    return this.run([{ opcode: TransferOpcode.READ, source: this.addr, targetId: seg, targetOffset: remote, length }]);
  }
}

describe('etcd metadata, one member', { skip: etcd.skip }, () => {
  let cluster: EtcdCluster;
  let ini: Initiator;
  let raw: EtcdMetadataStore;
  const peers: PeerProcess[] = [];
  const spawnNamed = async (name: string, conn: string, env: Record<string, string> = {}): Promise<PeerProcess> => {
    const p = await spawnPeer({}, { host: name, connectable: '127.0.0.1', metadataServer: conn, env: { ...ENV, ...env } });
    peers.push(p);
    return p;
  };

  before(async () => {
    cluster = await EtcdCluster.start(etcd.path, 1);
    ini = await Initiator.start(cluster.connString, 'initiator');
    raw = new EtcdMetadataStore([cluster.members[0]!.endpoint], { leaseTtlS: 0 });
  });
  after(async () => {
    await raw?.close();
    await ini?.engine.close();
    for (const p of peers) await p.stop();
    await cluster?.stop();
  });

  it('two processes transfer through etcd; values as FastWriter writes them; keys under the cluster id; deleted on close', async () => {
    const bare = cluster.connString.replace('etcd://', ''); // a bare host:port means etcd too
    const peer = await spawnNamed('target-1', bare);
    const remote = await peer.register(SIZE, 3);
    const rpc = await raw.get(`mooncake/${CLUSTER_ID}/rpc_meta/target-1`);
    assert.equal(rpc, `{"ip_or_host_name":"127.0.0.1","rpc_port":${peer.rpcPort}}\n`);
    const desc = await raw.get(`mooncake/${CLUSTER_ID}/ram/target-1`);
    // Sorted keys; engine_id and machine_id (ours: identity, same-host shared memory) sit between buffers and name.
    assert.match(desc ?? 'missing', new RegExp(`^\\{"buffers":\\[\\{"addr":${remote},"length":${SIZE},"name":"target-1"\\}\\],"engine_id":\\d+,"machine_id":"[^"]+","name":"target-1","protocol":"tcp",`));
    assert.ok(desc!.endsWith('"}\n'), 'FastWriter ends values with a newline');
    assert.equal(await raw.get('mooncake/ram/target-1'), null, 'nothing outside the cluster prefix');
    const seg = await ini.engine.openSegment('target-1');
    assert.deepEqual(await ini.read(seg, remote), [TaskStatus.COMPLETED]);
    assert.equal(sha256(ini.local), sha256(patternBuffer(SIZE, 3)));
    await peer.stop();
    assert.equal(await raw.get(`mooncake/${CLUSTER_ID}/ram/target-1`), null);
    assert.equal(await raw.get(`mooncake/${CLUSTER_ID}/rpc_meta/target-1`), null);
  });

  it('a peer killed and restarted on new ports under the same name is found again without reopening', async () => {
    // A fixed address base (TE_ADDRESS_BASE): the restarted peer registers the same memory at the same address.
    const first = await spawnNamed('target-2', cluster.connString, FIXED_BASE);
    const remote = await first.register(SIZE, 5);
    const seg = await ini.engine.openSegment('target-2');
    assert.deepEqual(await ini.read(seg, remote), [TaskStatus.COMPLETED]);
    first.kill();
    await sleep(200);
    const second = await spawnNamed('target-2', cluster.connString, FIXED_BASE);
    assert.equal(await second.register(SIZE, 6), remote);
    assert.notEqual(second.dataPort, first.dataPort);
    for (let i = 0; i < 3; i++) assert.deepEqual(await ini.read(seg, remote), [TaskStatus.COMPLETED], `round ${i}`);
    assert.equal(sha256(ini.local), sha256(patternBuffer(SIZE, 6)));
  });

  it('with TE_METADATA_LEASE_TTL the keys of a crashed engine expire; a live one keeps them', async () => {
    const crashing = await spawnNamed('target-lease', cluster.connString, { TE_METADATA_LEASE_TTL: '2' });
    const alive = await spawnNamed('target-lease-alive', cluster.connString, { TE_METADATA_LEASE_TTL: '2' });
    await crashing.register(4096);
    const key = `mooncake/${CLUSTER_ID}/ram/target-lease`;
    assert.notEqual(await raw.get(key), null);
    crashing.kill();
    await eventually('the crashed engine\'s descriptor expires', 10_000, async () => (await raw.get(key)) === null);
    assert.equal(await raw.get(`mooncake/${CLUSTER_ID}/rpc_meta/target-lease`), null);
    assert.notEqual(await raw.get(`mooncake/${CLUSTER_ID}/ram/target-lease-alive`), null, 'kept alive past the TTL');
    await alive.stop();
    assert.equal(await raw.get(`mooncake/${CLUSTER_ID}/ram/target-lease-alive`), null, 'close deletes (and revokes) at once');
  });

  it('etcd down at init: TE_METADATA_UNAVAILABLE within the timeout, nothing left bound', async () => {
    const dead = `etcd://127.0.0.1:${await freePort()}`;
    const e = new TransferEngine({ metadataServer: dead, env: { ...ENV, TE_METADATA_TIMEOUT_MS: '1000' } });
    const t0 = Date.now();
    await within(assert.rejects(e.init('never', '127.0.0.1'), (err: Error & { code?: string }) => err.code === 'TE_METADATA_UNAVAILABLE' || err.code === 'TE_TIMEOUT'), 5000, 'init against a dead etcd');
    assert.ok(Date.now() - t0 < 4000, `took ${Date.now() - t0} ms`);
    await e.close();
  });

  it('an endpoint list whose first member is dead fails over transparently', async () => {
    const conn = `etcd://127.0.0.1:${await freePort()},127.0.0.1:${cluster.members[0]!.clientPort}`;
    const other = await Initiator.start(conn, 'failover-initiator');
    try {
      const peer = await spawnNamed('target-3', conn);
      const remote = await peer.register(SIZE, 8);
      for (let i = 0; i < 5; i++) {
        const seg = await other.engine.openSegment('target-3');
        assert.deepEqual(await other.read(seg, remote), [TaskStatus.COMPLETED]);
        other.engine.closeSegment(seg);
      }
      assert.equal(sha256(other.local), sha256(patternBuffer(SIZE, 8)));
    } finally {
      await other.engine.close();
    }
  });

  it('etcd going down mid-run: open segments keep working, lookups fail typed and fast, all is well once it is back', async () => {
    const peer = await spawnNamed('target-4', cluster.connString);
    const remote = await peer.register(SIZE, 9);
    const seg = await ini.engine.openSegment('target-4');
    await cluster.kill(0);
    assert.deepEqual(await ini.read(seg, remote), [TaskStatus.COMPLETED]);
    const t0 = Date.now();
    await assert.rejects(ini.engine.openSegment('target-other'), (e: Error & { code?: string }) => e.code === 'TE_METADATA_UNAVAILABLE' || e.code === 'TE_TIMEOUT');
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
    ini.engine.registerLocalMemory(Buffer.alloc(4096));
    await assert.rejects(ini.engine.flushMetadata(), (e: Error & { code?: string }) => e.code === 'TE_METADATA_UNAVAILABLE' || e.code === 'TE_TIMEOUT');
    await cluster.restart(0);
    await eventually('the re-publish lands after etcd is back', 20_000, async () => {
      const d = await raw.get(`mooncake/${CLUSTER_ID}/ram/initiator`);
      return d !== null && JSON.parse(d).buffers.length === 2;
    });
    const r = await peer.call<{ statuses: Array<{ status: number }> }>('transfer', {
      segment: 'initiator',
      requests: [{ op: 'read', source: remote, target: String(ini.addr), length: 4096 }],
    });
    assert.deepEqual(r.statuses.map((s) => s.status), [TaskStatus.COMPLETED]);
  });
});

describe('etcd metadata, three-member cluster losing a member mid-run', { skip: etcd.skip }, () => {
  let cluster: EtcdCluster;
  const peers: PeerProcess[] = [];
  const engines: TransferEngine[] = [];
  before(async () => {
    cluster = await EtcdCluster.start(etcd.path, 3);
  });
  after(async () => {
    for (const e of engines) await e.close();
    for (const p of peers) await p.stop();
    await cluster?.stop();
  });

  it('transfers, lookups and publishes go on while one member is killed', async () => {
    const conn = cluster.connString;
    const ini = await Initiator.start(conn, 'c-initiator');
    engines.push(ini.engine);
    const peer = await spawnPeer({}, { host: 'c-target', connectable: '127.0.0.1', metadataServer: conn, env: ENV });
    peers.push(peer);
    const remote = await peer.register(SIZE, 13);
    const seg = await ini.engine.openSegment('c-target');
    let stop = false;
    let transfers = 0;
    const failures: string[] = [];
    // Transfers keep running across the kill.
    const transferLoop = (async () => {
      while (!stop) {
        const st = await ini.read(seg, remote, 256 * 1024);
        if (st[0] !== TaskStatus.COMPLETED) failures.push(`transfer ${TaskStatus[st[0]!]}`);
        transfers++;
      }
    })();
    // Metadata traffic too: lookups by a second engine and re-publishes by the initiator.
    const viewer = await Initiator.start(conn, 'c-viewer');
    engines.push(viewer.engine);
    let lookups = 0;
    let lookupErrors = 0;
    const lookupLoop = (async () => {
      while (!stop) {
        const t0 = Date.now();
        try {
          const h = await viewer.engine.openSegment('c-target');
          viewer.engine.closeSegment(h);
          lookups++;
        } catch (e) {
          lookupErrors++;
          assert.ok(['TE_METADATA_UNAVAILABLE', 'TE_TIMEOUT'].includes((e as { code?: string }).code ?? ''), String(e));
        }
        assert.ok(Date.now() - t0 < 6000, 'a lookup hung past the timeout');
        await sleep(20);
      }
    })();
    await sleep(1000);
    await cluster.kill(0);
    const lookupsAtKill = lookups;
    ini.engine.registerLocalMemory(Buffer.alloc(8192));
    await eventually('a re-publish after the kill', 15_000, async () => {
      await ini.engine.flushMetadata();
      return true;
    });
    await sleep(2000);
    stop = true;
    await Promise.all([transferLoop, lookupLoop]);
    assert.deepEqual(failures, []);
    assert.ok(transfers > 10, `only ${transfers} transfers ran`);
    assert.ok(lookups > lookupsAtKill, `no lookup succeeded after the kill (${lookupErrors} failed)`);
    // A newcomer can still join and be found through the surviving members.
    const late = await spawnPeer({}, { host: 'c-late', connectable: '127.0.0.1', metadataServer: conn, env: ENV });
    peers.push(late);
    const lateRemote = await late.register(SIZE, 14);
    const lateSeg = await ini.engine.openSegment('c-late');
    assert.deepEqual(await ini.read(lateSeg, lateRemote), [TaskStatus.COMPLETED]);
    assert.equal(sha256(ini.local), sha256(patternBuffer(SIZE, 14)));
  });
});
