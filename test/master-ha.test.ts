/**
 * Our master's HA (`--ha etcd://...`): two masters on a real etcd cluster,
 * one leads and one stands by; the wheel's Python clients and ours, given
 * `etcd://...` as the master address, find the leader (Mooncake's
 * mooncake-store/<cluster>/master_view key). The leader is SIGKILLed: the
 * standby takes over with every object, both kinds of client follow it, and
 * every object reads back byte-exact. Then an etcd member of three dies and
 * the store goes on.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { MooncakeDistributedStore, ReplicateConfig, StoreErrorCode } from '../src/store.js';
import { ensureInteropEnv } from './interop/mooncake.js';
import { EtcdCluster, MetadataServerProcess, requireServer } from './servers.js';
import { killOnExit, sleep, stopChild } from './store-harness/master.js';
import { PythonStore, pattern, patternDigest } from './store-harness/python-store.js';

const skip = ensureInteropEnv();
if (skip) console.warn(`\n*** SKIPPING master HA: ${skip} ***\n`);
const etcdBin = requireServer('etcd');

const MiB = 1 << 20;
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const digest = (b: Uint8Array): { length: number; sha: string } => ({ length: b.length, sha: createHash('sha256').update(b).digest('hex') });

interface MasterProc {
  child: ChildProcess;
  /** Lines of stdout as JSON objects, as they come. */
  events: Array<Record<string, unknown>>;
  stderr: string;
  next(event: string, ms: number): Promise<Record<string, unknown>>;
}

function startMaster(etcdConn: string, cluster: string): MasterProc {
  const child = spawn(
    process.execPath,
    [CLI, 'master', `--ha=${etcdConn}`, `--cluster_id=${cluster}`, '--ha_lease_ttl=2', '--rpc_address=127.0.0.1', '--rpc_port=0', '--metrics_port=-1', '--json'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  killOnExit(child);
  const m: MasterProc = {
    child,
    events: [],
    stderr: '',
    next: (event, ms) =>
      new Promise((resolve, reject) => {
        const seen = m.events.find((e) => e['event'] === event);
        if (seen) return resolve(seen);
        const t = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms; stderr: ${m.stderr}`)), ms);
        const check = (): void => {
          const e = m.events.find((x) => x['event'] === event);
          if (!e) return;
          clearTimeout(t);
          lines.off('line', check);
          resolve(e);
        };
        lines.on('line', check);
      }),
  };
  const lines = createInterface({ input: child.stdout! });
  lines.on('line', (l) => {
    try {
      m.events.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      /* not an event */
    }
  });
  child.stderr!.on('data', (d: Buffer) => (m.stderr += d.toString()));
  return m;
}

describe('master HA on etcd: the standby takes over with every object; Python and Node clients follow', { skip: skip ?? etcdBin.skip }, () => {
  let etcd: EtcdCluster;
  let metadata: MetadataServerProcess;
  const cluster = `te-ha-${randomBytes(4).toString('hex')}`;
  const env = { ...process.env, MC_TCP_BIND_ADDRESS: '127.0.0.1', MC_STORE_CLUSTER_ID: cluster };
  let etcdForClients = '';
  let a: MasterProc;
  let b: MasterProc;

  before(async () => {
    etcd = await EtcdCluster.start(etcdBin.path, 3);
    metadata = await MetadataServerProcess.start();
    etcdForClients = `etcd://${etcd.members.map((m) => `127.0.0.1:${m.clientPort}`).join(';')}`;
  });

  after(async () => {
    for (const m of [a, b]) if (m) await stopChild(m.child, 'SIGKILL');
    await metadata?.stop();
    await etcd?.stop();
  });

  test('leader killed: the standby leads within seconds, all objects intact, clients follow; an etcd member dies and the store goes on', async (t) => {
    // Before any master leads: setup fails with a code and says why, it does not hang.
    const early = new MooncakeDistributedStore({ env });
    assert.equal(await early.setup('127.0.0.1', metadata.url, 0, '4MB', 'tcp', '', etcdForClients), StoreErrorCode.RPC_FAIL);
    assert.match(early.getLastError()?.message ?? '', /no master leads cluster/);
    await early.close();

    a = startMaster(etcd.connString, cluster);
    const readyA = await a.next('master_ready', 20_000);
    b = startMaster(etcd.connString, cluster);
    await b.next('master_standby', 20_000);
    assert.ok(!b.events.some((e) => e['event'] === 'master_ready'), 'one leader at a time');

    const py = await PythonStore.start({ master: etcdForClients, metadata: metadata.url, globalSegmentSize: 32 * MiB, localBufferSize: 16 * MiB, env: { MC_STORE_CLUSTER_ID: cluster } });
    const node = new MooncakeDistributedStore({ env });
    assert.equal(await node.setup('127.0.0.1', metadata.url, '32MB', '16MB', 'tcp', '', etcdForClients), 0, node.getLastError()?.message);
    try {
      const sizes = [1, 4096, MiB, 3 * MiB];
      for (const [i, size] of sizes.entries()) {
        assert.equal(await py.put(`py-${i}`, 10 + i, size), 0, `python put ${size}`);
        assert.equal(await node.put(`node-${i}`, pattern(20 + i, size), new ReplicateConfig({ replicaNum: 2 })), 0, node.getLastError()?.message);
      }
      assert.equal(await py.put('removed', 30, 100), 0);
      assert.equal(await node.remove('removed', true), 0);

      const killedAt = Date.now();
      a.child.kill('SIGKILL');
      const readyB = await b.next('master_ready', 20_000);
      t.diagnostic(`the standby led ${Date.now() - killedAt} ms after the leader's SIGKILL (lease TTL 2 s)`);
      assert.notEqual(readyB['rpcPort'], readyA['rpcPort']);

      // Both clients find the new leader by themselves and read everything back.
      const deadline = Date.now() + 30_000;
      for (const [i, size] of sizes.entries()) {
        for (;;) {
          const got = await py.get(`node-${i}`);
          if (got.length === size || Date.now() > deadline) {
            assert.deepEqual(got, patternDigest(20 + i, size), `python reads node-${i} after the failover`);
            break;
          }
          await sleep(250);
        }
        for (;;) {
          const got = await node.get(`py-${i}`);
          if (got.length === size || Date.now() > deadline) {
            assert.deepEqual(digest(got), patternDigest(10 + i, size), `node reads py-${i} after the failover: ${node.getLastError()?.message}`);
            break;
          }
          await sleep(250);
        }
      }
      assert.equal(await py.isExist('removed'), 0, 'a removal committed before the failover stays removed');
      assert.equal(await node.put('after', pattern(40, MiB)), 0, node.getLastError()?.message);
      assert.deepEqual(await py.get('after'), patternDigest(40, MiB));

      // A member of the three etcds dies: the leader keeps committing to the two left.
      await etcd.kill(0);
      assert.equal(await py.put('after-etcd-loss', 41, 2 * MiB), 0);
      assert.deepEqual(digest(await node.get('after-etcd-loss')), patternDigest(41, 2 * MiB), node.getLastError()?.message);
      assert.ok(b.child.exitCode === null, `the leader is still up: ${b.stderr}`);
    } finally {
      await node.close();
      await py.stop();
    }
  });
});

