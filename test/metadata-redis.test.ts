/**
 * Redis metadata against real redis-server processes on free loopback ports:
 * two engines in separate processes with and without a password,
 * MC_REDIS_DB_INDEX, a wrong or missing password, Redis down at init, and a
 * Redis restart mid-run (it comes back empty: our keys are written again).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { TransferEngine, TransferOpcode, TaskStatus } from '../src/core.js';
import { spawnPeer, sha256, type PeerProcess } from './helpers.js';
import { patternBuffer } from './pattern.js';
import { RedisServer, freePort, requireServer } from './servers.js';

const redis = requireServer('redis-server');
const te = (code: string) => (e: unknown): boolean => (e as { code?: string }).code === code;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const SIZE = 2 * 1024 * 1024;

async function eventually(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(100);
  }
}

/** A plain client to look at what the engines stored. */
function rawClient(server: RedisServer, db = 0): Redis {
  return new Redis({ host: '127.0.0.1', port: server.port, db, ...(server.password ? { password: server.password } : {}), lazyConnect: true, maxRetriesPerRequest: 1 });
}

async function transferRoundTrip(conn: string, env: Record<string, string>, name: string, raw: Redis): Promise<void> {
  const peers: PeerProcess[] = [];
  const engine = new TransferEngine({ metadataServer: conn, env: { ...process.env, ...env } });
  await engine.init(`${name}-initiator`, '127.0.0.1');
  try {
    const local = Buffer.alloc(SIZE);
    const localAddr = engine.registerLocalMemory(local);
    const peer = await spawnPeer({}, { host: name, connectable: '127.0.0.1', metadataServer: conn, env });
    peers.push(peer);
    const remote = await peer.register(SIZE, 17);
    assert.equal(await raw.get(`mooncake/rpc_meta/${name}`), `{"ip_or_host_name":"127.0.0.1","rpc_port":${peer.rpcPort}}\n`);
    const desc = await raw.get(`mooncake/ram/${name}`);
    assert.ok(desc?.startsWith(`{"buffers":[{"addr":${remote},"length":${SIZE},"name":"${name}"}],`) && desc.endsWith('}\n'), desc ?? 'missing');
    const seg = await engine.openSegment(name);
    const bid = engine.allocateBatchID(1);
    engine.submitTransfer(bid, [{ opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: remote, length: SIZE }]);
    assert.deepEqual((await engine.waitBatch(bid)).map((s) => s.status), [TaskStatus.COMPLETED]);
    engine.freeBatchID(bid);
    assert.equal(sha256(local), sha256(patternBuffer(SIZE, 17)));
    await peer.stop();
    assert.equal(await raw.get(`mooncake/ram/${name}`), null, 'deleted on close');
    assert.equal(await raw.get(`mooncake/rpc_meta/${name}`), null, 'deleted on close');
  } finally {
    await engine.close();
    for (const p of peers) await p.stop();
  }
}

describe('redis metadata without a password', { skip: redis.skip }, () => {
  let server: RedisServer;
  let raw: Redis;
  before(async () => {
    server = await RedisServer.start(redis.path);
    raw = rawClient(server);
    await raw.connect();
  });
  after(async () => {
    raw?.disconnect();
    await server?.stop();
  });

  it('two processes transfer through Redis; values end in "\\n"; keys deleted on close', async () => {
    await transferRoundTrip(server.connString, {}, 'r-target', raw);
  });

  it('a live namesake is refused (Redis would let the last writer win); a crashed one is replaced', async () => {
    const live = await spawnPeer({}, { host: 'r-dup', connectable: '127.0.0.1', metadataServer: server.connString });
    try {
      const before = { rpc: await raw.get('mooncake/rpc_meta/r-dup'), ram: await raw.get('mooncake/ram/r-dup') };
      assert.ok(before.rpc && before.ram, 'the live peer published both keys');
      const clash = new TransferEngine({ metadataServer: server.connString });
      await assert.rejects(clash.init('r-dup', '127.0.0.1'), (e: unknown) => te('TE_METADATA_REJECTED')(e) && /in use/.test(String(e)));
      await clash.close();
      assert.deepEqual({ rpc: await raw.get('mooncake/rpc_meta/r-dup'), ram: await raw.get('mooncake/ram/r-dup') }, before, 'the live peer keeps its keys');
      live.kill(); // SIGKILL: its keys stay behind
      await live.stop(); // waits for the exit
      assert.equal(await raw.get('mooncake/rpc_meta/r-dup'), before.rpc);
      const heir = new TransferEngine({ metadataServer: server.connString });
      try {
        await heir.init('r-dup', '127.0.0.1');
        assert.equal(await raw.get('mooncake/rpc_meta/r-dup'), `{"ip_or_host_name":"127.0.0.1","rpc_port":${heir.rpcPort}}\n`);
      } finally {
        await heir.close();
      }
    } finally {
      await live.stop();
    }
  });

  it('MC_REDIS_DB_INDEX selects the database; a malformed one is TE_BAD_ENV', async () => {
    const db3 = rawClient(server, 3);
    await db3.connect();
    try {
      await transferRoundTrip(server.connString, { MC_REDIS_DB_INDEX: '3' }, 'r-db3', db3);
      const e = new TransferEngine({ metadataServer: server.connString, env: { MC_REDIS_DB_INDEX: 'three' } });
      await assert.rejects(e.init('x', '127.0.0.1'), te('TE_BAD_ENV'));
    } finally {
      db3.disconnect();
    }
  });

  it('Redis down at init: TE_METADATA_UNAVAILABLE at once', async () => {
    const e = new TransferEngine({ metadataServer: `redis://127.0.0.1:${await freePort()}` });
    const t0 = Date.now();
    await assert.rejects(e.init('x', '127.0.0.1'), te('TE_METADATA_UNAVAILABLE'));
    assert.ok(Date.now() - t0 < 2500, `took ${Date.now() - t0} ms`);
  });

  it('Redis restarted mid-run (empty): lookups fail typed while down, our keys are written again when it is back', async () => {
    const conn = server.connString;
    const engine = new TransferEngine({ metadataServer: conn, env: { ...process.env, TE_METADATA_TIMEOUT_MS: '1000' } });
    await engine.init('r-survivor', '127.0.0.1');
    const peer = await spawnPeer({}, { host: 'r-peer', connectable: '127.0.0.1', metadataServer: conn, env: {} });
    try {
      const local = Buffer.alloc(SIZE);
      const localAddr = engine.registerLocalMemory(local);
      await engine.flushMetadata();
      const remote = await peer.register(SIZE, 23);
      const seg = await engine.openSegment('r-peer');
      await server.kill();
      const bid = engine.allocateBatchID(1);
      engine.submitTransfer(bid, [{ opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: remote, length: SIZE }]);
      assert.deepEqual((await engine.waitBatch(bid)).map((s) => s.status), [TaskStatus.COMPLETED], 'open segments need no metadata');
      engine.freeBatchID(bid);
      const t0 = Date.now();
      await assert.rejects(engine.openSegment('r-other'), te('TE_METADATA_UNAVAILABLE'));
      assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
      await server.restart();
      raw.disconnect();
      raw = rawClient(server);
      await raw.connect();
      await eventually('both engines re-publish into the restarted Redis', 15_000, async () =>
        (await raw.get('mooncake/ram/r-survivor')) !== null && (await raw.get('mooncake/rpc_meta/r-peer')) !== null && (await raw.get('mooncake/ram/r-peer')) !== null,
      );
      const r = await peer.call<{ statuses: Array<{ status: number }> }>('transfer', {
        segment: 'r-survivor',
        requests: [{ op: 'read', source: remote, target: String(localAddr), length: 4096 }],
      });
      assert.deepEqual(r.statuses.map((s) => s.status), [TaskStatus.COMPLETED]);
    } finally {
      await engine.close();
      await peer.stop();
    }
  });
});

describe('redis metadata with a password', { skip: redis.skip }, () => {
  let server: RedisServer;
  let raw: Redis;
  before(async () => {
    server = await RedisServer.start(redis.path, { password: 's3cret pass' });
    raw = rawClient(server);
    await raw.connect();
  });
  after(async () => {
    raw?.disconnect();
    await server?.stop();
  });

  it('MC_REDIS_PASSWORD authenticates both processes', async () => {
    await transferRoundTrip(server.connString, { MC_REDIS_PASSWORD: 's3cret pass' }, 'rp-target', raw);
  });

  it('MC_REDIS_USERNAME=default with the password works too', async () => {
    await transferRoundTrip(server.connString, { MC_REDIS_USERNAME: 'default', MC_REDIS_PASSWORD: 's3cret pass' }, 'rp-user', raw);
  });

  it('a wrong or missing password is TE_METADATA_REJECTED, quickly, naming the variables', async () => {
    for (const env of [{ MC_REDIS_PASSWORD: 'wrong' }, {}, { MC_REDIS_USERNAME: 'nobody', MC_REDIS_PASSWORD: 's3cret pass' }]) {
      const e = new TransferEngine({ metadataServer: server.connString, env });
      const t0 = Date.now();
      await assert.rejects(e.init('x', '127.0.0.1'), (err: Error & { code?: string }) => err.code === 'TE_METADATA_REJECTED' && /MC_REDIS_PASSWORD/.test(err.message), JSON.stringify(env));
      assert.ok(Date.now() - t0 < 2500, `took ${Date.now() - t0} ms`);
    }
    assert.equal(await raw.get('mooncake/rpc_meta/x'), null, 'nothing written');
  });
});
