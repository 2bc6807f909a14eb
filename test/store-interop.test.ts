/**
 * Our store client (transfer-engine/store) sharing one Mooncake Store with
 * Mooncake's own Python clients: the real mooncake_master and Python
 * MooncakeDistributedStore of the pinned wheel (test/store-harness), on free
 * loopback ports. Values are compared by SHA-256 of pattern(seed, length)
 * bytes; results are compared with what Python returns for the same call.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { fork, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { MooncakeDistributedStore, ReplicateConfig, StoreErrorCode } from '../src/store.js';
import { ensureInteropEnv } from './interop/mooncake.js';
import { MASTER_KINDS, MooncakeMaster, killOnExit } from './store-harness/master.js';
import { PythonStore, pattern, patternDigest } from './store-harness/python-store.js';
import { encodeResponse, RequestDecoder } from '../src/store/codec/coro-rpc.js';
import { encodeMessage, expected, i32, string } from '../src/store/codec/struct-pack.js';

const skip = ensureInteropEnv();
if (skip) console.warn(`\n*** SKIPPING store interop suite: ${skip} ***\n`);

const MiB = 1 << 20;
const ENV = { ...process.env, MC_TCP_BIND_ADDRESS: '127.0.0.1' };
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const digest = (b: Uint8Array): { length: number; sha: string } => ({ length: b.length, sha: sha(b) });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

async function nodeStore(master: MooncakeMaster, sizes: { segment: string; buffer: string }): Promise<MooncakeDistributedStore> {
  const s = new MooncakeDistributedStore({ env: ENV });
  const rc = await s.setup('127.0.0.1', master.metadataUrl, sizes.segment, sizes.buffer, 'tcp', '', master.address);
  assert.equal(rc, 0, `setup: ${s.getLastError()?.message}`);
  return s;
}

const masterName = (kind: string): string => (kind === 'mooncake' ? 'mooncake_master' : 'our master');

for (const kind of MASTER_KINDS) describe(`store: Node and Python clients on one ${masterName(kind)}`, { skip: skip ?? false }, () => {
  let master: MooncakeMaster;
  let node: MooncakeDistributedStore;
  let py: PythonStore;

  before(async () => {
    master = await MooncakeMaster.start({ kind, leaseTtlMs: 1000 });
    node = await nodeStore(master, { segment: '256MB', buffer: '80MB' });
    py = await PythonStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 256 * MiB, localBufferSize: 80 * MiB });
  });

  after(async () => {
    await node?.close();
    await py?.stop();
    await master?.stop();
  });

  test('Node put -> Python get and Python put -> Node get, 1 B to 64 MiB, byte-exact, in either segment', async () => {
    for (const [i, size] of [1, 4096, MiB, 64 * MiB].entries()) {
      for (const where of ['node', 'python'] as const) {
        const seg = where === 'node' ? node.getHostname() : py.hostname;
        const config = new ReplicateConfig({ preferredSegments: [seg] });
        const a = `n2p-${size}-${where}`;
        assert.equal(await node.put(a, pattern(i * 10 + 1, size), config), 0, `${a}: ${node.getLastError()?.message}`);
        assert.deepEqual(await py.get(a), patternDigest(i * 10 + 1, size), a);
        const b = `p2n-${size}-${where}`;
        assert.equal(await py.put(b, i * 10 + 2, size, { preferred_segments: [seg] }), 0, b);
        assert.deepEqual(digest(await node.get(b)), patternDigest(i * 10 + 2, size), `${b}: ${node.getLastError()?.message}`);
      }
      // Room for the next size: the 4 objects of this one go, whoever wrote them.
      // (4 x 64 MiB in 2 x 256 MiB of segments: below the master's eviction watermark, 90%.)
      const keys = ['node', 'python'].flatMap((w) => [`n2p-${size}-${w}`, `p2n-${size}-${w}`]);
      assert.equal(await node.removeAll(true), 4);
      assert.deepEqual(await py.batchIsExist(keys), [0, 0, 0, 0]);
      assert.equal(await py.removeAll(true), 0);
    }
  });

  test('batches both ways, and zero-copy putFrom/getInto with registered memory', async () => {
    const keys = ['b-1', 'b-2', 'b-3'];
    const lens = [10, 300_000, 2 * MiB];
    assert.equal(await node.putBatch(keys, lens.map((n, i) => pattern(200 + i, n))), 0, node.getLastError()?.message);
    assert.deepEqual(await py.getBatch(keys), lens.map((n, i) => patternDigest(200 + i, n)));
    assert.equal(await py.putBatch(['pb-1', 'pb-2'], [300, 301], [5, MiB]), 0);
    const got = await node.getBatch(['pb-1', 'pb-2', 'pb-missing']);
    assert.deepEqual(got.map(digest), [patternDigest(300, 5), patternDigest(301, MiB), { length: 0, sha: sha(Buffer.alloc(0)) }]);

    const mem = Buffer.alloc(8 * MiB);
    assert.equal(node.registerBuffer(mem), 0);
    const base = node.getBufferAddress(mem);
    assert.ok(base > 0);
    pattern(400, 3 * MiB).copy(mem, 0);
    assert.equal(await node.putFrom('zc-1', base, 3 * MiB), 0, node.getLastError()?.message);
    assert.deepEqual(await py.get('zc-1'), patternDigest(400, 3 * MiB));
    assert.equal(await py.putFrom('zc-2', 401, 2 * MiB), 0);
    assert.equal(await node.getInto('zc-2', base + 4 * MiB, 4 * MiB), 2 * MiB);
    assert.equal(sha(mem.subarray(4 * MiB, 6 * MiB)), patternDigest(401, 2 * MiB).sha);
    assert.equal(await node.getInto('zc-2', base, MiB), StoreErrorCode.INVALID_PARAMS, 'buffer too small: -600, as Python');
    assert.equal((await py.getInto('zc-2', MiB)).rc, StoreErrorCode.INVALID_PARAMS);

    pattern(500, MiB).copy(mem, 0);
    pattern(501, MiB).copy(mem, MiB);
    assert.deepEqual(await node.batchPutFrom(['zb-1', 'zb-2'], [base, base + MiB], [MiB, MiB]), [0, 0]);
    assert.deepEqual(await py.getBatch(['zb-1', 'zb-2']), [patternDigest(500, MiB), patternDigest(501, MiB)]);
    mem.fill(0);
    assert.deepEqual(await node.batchGetInto(['zb-2', 'zb-missing'], [base, base + MiB], [MiB, MiB]), [MiB, StoreErrorCode.OBJECT_NOT_FOUND]);
    assert.equal(sha(mem.subarray(0, MiB)), patternDigest(501, MiB).sha);
    assert.equal(node.getBufferAddress(mem.subarray(MiB)), base + MiB, 'an address inside the registration');
    assert.equal(node.unregisterBuffer(base), 0);
    assert.equal(node.getBufferAddress(mem), 0, 'unregistered memory has no address');
    assert.equal(node.getBufferAddress(Buffer.alloc(16)), 0, 'nor has memory never registered');
  });

  test('an object a Python client places in the Node segment lives in Node memory: a second Python client reads it from us', async () => {
    const second = await PythonStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 16 * MiB, localBufferSize: 16 * MiB });
    try {
      assert.equal(await py.put('in-node', 600, 5 * MiB, { preferred_segment: node.getHostname() }), 0);
      const served = node.getEngine()!.stats().requestsServed;
      assert.deepEqual(await second.get('in-node'), patternDigest(600, 5 * MiB));
      assert.ok(node.getEngine()!.stats().requestsServed > served, 'the read was served by our data port');
      assert.deepEqual(digest(await node.get('in-node')), patternDigest(600, 5 * MiB));
    } finally {
      await second.stop();
    }
  });

  test('isExist, getSize, remove, removeByRegex and removeAll say the same from both languages; leases as Mooncake', async () => {
    await node.removeAll(true);
    assert.equal(await node.put('q-1', pattern(700, 1234)), 0);
    assert.equal(await py.put('q-2', 701, 99), 0);
    for (const k of ['q-1', 'q-2', 'q-none']) {
      assert.equal(await node.isExist(k), await py.isExist(k), `isExist ${k}`);
      assert.equal(await node.getSize(k), await py.getSize(k), `getSize ${k}`);
    }
    assert.deepEqual(await node.batchIsExist(['q-1', 'q-none', 'q-2']), await py.batchIsExist(['q-1', 'q-none', 'q-2']));
    assert.equal(await node.getSize('q-none'), StoreErrorCode.OBJECT_NOT_FOUND);
    // getSize took a read lease (1 s on this master): a plain remove is refused, a forced one is not.
    assert.equal(await node.remove('q-1'), StoreErrorCode.OBJECT_HAS_LEASE);
    assert.equal(await py.remove('q-1'), StoreErrorCode.OBJECT_HAS_LEASE);
    assert.equal(await node.remove('q-1', true), 0);
    assert.equal(await node.isExist('q-1'), 0);
    await sleep(1200); // the lease on q-2 ends
    assert.equal(await node.remove('q-2'), 0);
    assert.equal(await py.isExist('q-2'), 0);
    assert.equal(await node.remove('q-2'), StoreErrorCode.OBJECT_NOT_FOUND);
    for (const [i, k] of ['r-a1', 'r-a2', 'r-b1'].entries()) assert.equal(await (i % 2 ? py.put(k, 710 + i, 10) : node.put(k, pattern(710 + i, 10))), 0);
    assert.equal(await node.removeByRegex('^r-a', true), 2);
    assert.equal(await py.removeByRegex('^r-a', true), 0);
    assert.equal(await py.put('r-c1', 720, 10), 0);
    assert.equal(await node.removeAll(true), 2);
    assert.equal(await py.removeAll(true), 0);
  });

  test('same host, both ends ours: objects in a shared-memory segment are copied directly, not sent over TCP', async () => {
    const owner = new MooncakeDistributedStore({ env: ENV, shm: true });
    assert.equal(await owner.setup('127.0.0.1', master.metadataUrl, '32MB', '8MB', 'tcp', '', master.address), 0, owner.getLastError()?.message);
    try {
      const cfg = new ReplicateConfig({ preferredSegments: [owner.getHostname()] });
      const before = node.getEngine()!.stats();
      const served = owner.getEngine()!.stats().requestsServed;
      assert.equal(await node.put('shm-1', pattern(1100, 2 * MiB), cfg), 0, node.getLastError()?.message);
      assert.deepEqual(digest(await node.get('shm-1')), patternDigest(1100, 2 * MiB));
      const after = node.getEngine()!.stats();
      assert.equal(after.shmCopies - before.shmCopies, 2, 'the WRITE and the READ were copies through shared memory');
      assert.equal(owner.getEngine()!.stats().requestsServed, served, "nothing went over the owner's data port");
      // Python reads the same object from the owner over TCP.
      assert.deepEqual(await py.get('shm-1'), patternDigest(1100, 2 * MiB));
      assert.equal(await node.remove('shm-1', true), 0);
    } finally {
      await owner.close();
    }
  });

  test('replicaNum 2: both replicas written; the object survives the segment of one of them leaving', async () => {
    const other = await PythonStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 16 * MiB, localBufferSize: 16 * MiB });
    let closed = false;
    try {
      const cfg = new ReplicateConfig({ replicaNum: 2, preferredSegments: [other.hostname, node.getHostname()] });
      assert.equal(await node.put('two', pattern(1200, 3 * MiB), cfg), 0, node.getLastError()?.message);
      assert.deepEqual(await other.get('two'), patternDigest(1200, 3 * MiB));
      await other.stop(); // unmounts its segment: the replica there goes
      closed = true;
      assert.deepEqual(digest(await node.get('two')), patternDigest(1200, 3 * MiB), node.getLastError()?.message);
      assert.deepEqual(await py.get('two'), patternDigest(1200, 3 * MiB));
    } finally {
      if (!closed) await other.stop();
    }
  });

  test('an engine passed in (Python\'s engine=): objects move over it, and close() leaves it open', async () => {
    const { TransferEngine } = await import('../src/core.js');
    const engine = new TransferEngine({ metadataServer: master.metadataUrl, env: ENV });
    await engine.init('127.0.0.1:14999', '127.0.0.1');
    const s = new MooncakeDistributedStore({ engine });
    try {
      assert.equal(await s.setup('127.0.0.1:14999', master.metadataUrl, '8MB', '8MB', 'tcp', '', master.address), 0, s.getLastError()?.message);
      assert.equal(s.getEngine(), engine);
      assert.equal(await s.put('via-engine', pattern(1300, 1000), new ReplicateConfig({ preferredSegments: [s.getHostname()] })), 0);
      assert.deepEqual(await py.get('via-engine'), patternDigest(1300, 1000));
      assert.equal(await s.close(), 0);
      assert.equal(engine.segmentName, '127.0.0.1:14999', 'the engine is still open');
      assert.deepEqual(engine.getLocalSegmentDescriptor().buffers, [], "and holds none of the store's memory");
    } finally {
      await s.close();
      await engine.close();
    }
  });

  test('P2PHANDSHAKE metadata: segments found through their owners, both ways', async () => {
    const a = new MooncakeDistributedStore({ env: ENV });
    const b = await PythonStore.start({ master: master.address, metadata: 'P2PHANDSHAKE', globalSegmentSize: 16 * MiB, localBufferSize: 16 * MiB });
    try {
      assert.equal(await a.setup('127.0.0.1', 'P2PHANDSHAKE', '16MB', '8MB', 'tcp', '', master.address), 0, a.getLastError()?.message);
      assert.match(a.getHostname(), /^127\.0\.0\.1:\d+$/);
      assert.equal(await a.put('p2p-1', pattern(1400, MiB), new ReplicateConfig({ preferredSegments: [a.getHostname()] })), 0, a.getLastError()?.message);
      assert.deepEqual(await b.get('p2p-1'), patternDigest(1400, MiB));
      assert.equal(await b.put('p2p-2', 1401, MiB, { preferred_segments: [b.hostname] }), 0);
      assert.deepEqual(digest(await a.get('p2p-2')), patternDigest(1401, MiB), a.getLastError()?.message);
      await a.remove('p2p-1', true);
      await a.remove('p2p-2', true);
    } finally {
      await a.close();
      await b.stop();
    }
  });

  test('upsert replaces what put leaves; batch forms; batchRemove per key, a leased key refused', async () => {
    assert.equal(await node.put('u-1', pattern(1500, 100)), 0);
    assert.equal(await node.upsert('u-1', pattern(1501, 200)), 0, node.getLastError()?.message);
    assert.deepEqual(await py.get('u-1'), patternDigest(1501, 200));
    assert.equal(await py.upsert('u-1', 1502, 300), 0);
    assert.deepEqual(digest(await node.get('u-1')), patternDigest(1502, 300));
    assert.equal(await node.upsertBatch(['u-1', 'u-2'], [pattern(1503, 10), pattern(1504, 20)]), 0, node.getLastError()?.message);
    assert.deepEqual(await py.getBatch(['u-1', 'u-2']), [patternDigest(1503, 10), patternDigest(1504, 20)]);
    const mem = Buffer.from(pattern(1505, 4096));
    assert.equal(node.registerBuffer(mem), 0);
    const at = node.getBufferAddress(mem);
    assert.equal(await node.upsertFrom('u-2', at, 4096), 0);
    assert.deepEqual(await node.batchUpsertFrom(['u-3'], [at], [4096]), [0]);
    assert.deepEqual(await py.getBatch(['u-2', 'u-3']), [patternDigest(1505, 4096), patternDigest(1505, 4096)]);
    assert.equal(node.unregisterBuffer(at), 0);
    // u-2 and u-3 were just read (leases): a plain batch remove refuses them, as Python's does; force removes all.
    assert.deepEqual(await node.batchRemove(['u-2', 'u-3', 'u-none']), await py.batchRemove(['u-2', 'u-3', 'u-none']));
    assert.deepEqual((await node.batchRemove(['u-1', 'u-2', 'u-3'], true)), [0, 0, 0]);
    assert.deepEqual(await py.batchIsExist(['u-1', 'u-2', 'u-3']), [0, 0, 0]);
  });

  test('a key that exists already: put returns 0 and leaves it, as Python', async () => {
    assert.equal(await node.put('dup', pattern(800, 100)), 0);
    assert.equal(await node.put('dup', pattern(801, 200)), 0);
    assert.equal(await py.put('dup', 802, 300), 0);
    assert.deepEqual(digest(await node.get('dup')), patternDigest(800, 100));
  });
});

for (const kind of MASTER_KINDS) describe(`store: faults (${masterName(kind)})`, { skip: skip ?? false }, () => {
  test('master killed and restarted: our client re-mounts and works again (objects from before are gone, as with Mooncake)', async () => {
    const master = await MooncakeMaster.start({ kind });
    const node = await nodeStore(master, { segment: '32MB', buffer: '16MB' });
    try {
      assert.equal(await node.put('before', pattern(900, 1000)), 0);
      await master.restart({ signal: 'SIGKILL' });
      // The first calls may fail while our client re-mounts; within a few pings it works again.
      await until(async () => (await node.put('after', pattern(901, 1000), new ReplicateConfig({ preferredSegments: [node.getHostname()] }))) === 0, 20_000, 'a put after the restart');
      assert.deepEqual(digest(await node.get('after')), patternDigest(901, 1000));
      assert.equal(await node.isExist('before'), 0);
      // Python clients find our segment again (the restarted master's metadata server lost it; we published it again).
      const py = await PythonStore.start({ master: master.address, metadata: master.metadataUrl });
      try {
        assert.deepEqual(await py.get('after'), patternDigest(901, 1000));
      } finally {
        await py.stop();
      }
    } finally {
      await node.close();
      await master.stop();
    }
  });

  test('a Node client killed: its segment leaves the master and gets of its objects fail cleanly', async () => {
    const master = await MooncakeMaster.start({ kind, clientTtlS: 3 });
    const reader = await nodeStore(master, { segment: '16MB', buffer: '16MB' });
    const child: ChildProcess = fork(fileURLToPath(new URL('./fixtures/store-node.js', import.meta.url)), [master.address, master.metadataUrl, 'victim', '3'], {
      env: ENV,
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    killOnExit(child);
    try {
      const first = await createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next();
      const info = JSON.parse(String(first.value)) as { hostname?: string; keys?: string[]; message?: string };
      assert.ok(info.keys, `the child did not start: ${info.message}`);
      assert.deepEqual(digest(await reader.get('victim-0')), patternDigest(1000, 64 * 1024));
      child.kill('SIGKILL');
      // Until the master notices (its client TTL), a get fails on the transfer; after, the object is gone. Never a hang, never wrong bytes.
      await until(async () => (await reader.getSize('victim-1')) === StoreErrorCode.OBJECT_NOT_FOUND, 20_000, 'the dead client to leave');
      const g = await reader.get('victim-2');
      assert.equal(g.length, 0);
      assert.equal(reader.getLastError()?.returnCode, StoreErrorCode.OBJECT_NOT_FOUND);
    } finally {
      child.kill('SIGKILL');
      await reader.close();
      await master.stop();
    }
  });
});

/** A fake master: answers every request with `reply(functionId, seq)` (bytes to send), or closes. */
async function fakeMaster(reply: (functionId: number, seq: number, sock: net.Socket) => void): Promise<{ address: string; close(): Promise<void> }> {
  const socks = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    sock.on('error', () => {});
    const d = new RequestDecoder({ maxFrame: 1 << 20 });
    sock.on('data', (c: Buffer) => {
      for (const f of d.push(c)) reply(f.functionId, f.seq, sock);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        server.close(() => r());
      }),
  };
}

describe('store: bad input and bad masters', { skip: skip ?? false }, () => {
  let master: MooncakeMaster;
  let node: MooncakeDistributedStore;
  before(async () => {
    master = await MooncakeMaster.start();
    node = await nodeStore(master, { segment: '16MB', buffer: '4MB' });
  });
  after(async () => {
    await node?.close();
    await master?.stop();
  });

  test('empty keys, empty values, values larger than the local buffer, bad configs: the codes Python returns', async () => {
    assert.equal(await node.put('', pattern(1, 10)), StoreErrorCode.INVALID_KEY);
    assert.equal(await node.put('k'.repeat(64 * 1024 + 1), pattern(1, 10)), StoreErrorCode.INVALID_KEY);
    assert.match(node.getLastError()!.message, /keys are at most 65536/);
    assert.equal(await node.isExist('x'.repeat(100_000)), StoreErrorCode.INVALID_KEY);
    assert.equal(await node.put('k', new Uint8Array(0)), StoreErrorCode.INVALID_PARAMS);
    assert.equal(await node.put('k', Buffer.alloc(5 * MiB)), StoreErrorCode.INVALID_PARAMS);
    assert.match(node.getLastError()!.message, /local buffer/);
    assert.equal(await node.put('k', pattern(1, 10), new ReplicateConfig({ preferAllocInSameNode: true })), StoreErrorCode.INVALID_PARAMS);
    assert.equal(await node.put('k', pattern(1, 10), new ReplicateConfig({ replicaNum: 0 })), StoreErrorCode.INVALID_PARAMS);
    assert.equal(await node.putFrom('k', 12345, 10), StoreErrorCode.INVALID_PARAMS, 'not registered memory');
    assert.equal((await node.get('never-there')).length, 0);
    assert.equal(node.getLastError()!.returnCode, StoreErrorCode.OBJECT_NOT_FOUND);
    assert.equal(await node.isExist('k'), 0, 'nothing was stored by the refused puts');
    await assert.rejects(node.put(5 as never, pattern(1, 1)), TypeError);
  });

  test('setup against a master that is not there, of another version, answering garbage, or cutting a reply: typed failures, no hang', async () => {
    const dead = await fakeMaster(() => {});
    const deadAddr = dead.address;
    await dead.close();
    const cases: Array<[string, (id: number, seq: number, sock: net.Socket) => void, number, RegExp]> = [
      ['another version', (_id, seq, sock) => sock.write(encodeResponse(seq, 0, encodeMessage(expected(string, i32), { ok: true, value: '9.9.9' }))), StoreErrorCode.INVALID_VERSION, /"9\.9\.9".*"2\.0\.0"/],
      ['garbage', (_id, _seq, sock) => sock.write(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')), StoreErrorCode.RPC_FAIL, /magic/],
      ['a reply of another type', (_id, seq, sock) => sock.write(encodeResponse(seq, 0, encodeMessage(i32, 7))), StoreErrorCode.INVALID_VERSION, /type hash.*another store version than "2\.0\.0"/],
      [
        'a reply cut mid-frame',
        (_id, seq, sock) => {
          const full = encodeResponse(seq, 0, encodeMessage(expected(string, i32), { ok: true, value: '2.0.0' }));
          sock.end(full.subarray(0, full.length - 3));
        },
        StoreErrorCode.RPC_FAIL,
        /closed the connection/,
      ],
      ['an unknown function', (_id, seq, sock) => sock.write(encodeResponse(seq, 11, encodeMessage(string, 'the rpc function not registered'))), StoreErrorCode.RPC_FAIL, /not registered/],
    ];
    for (const [what, reply, code, message] of cases) {
      const fake = await fakeMaster(reply);
      const s = new MooncakeDistributedStore({ env: ENV });
      try {
        const t0 = Date.now();
        assert.equal(await s.setup('127.0.0.1', 'P2PHANDSHAKE', '1MB', '1MB', 'tcp', '', fake.address), code, `${what}: ${s.getLastError()?.message}`);
        assert.match(s.getLastError()!.message, message, what);
        assert.ok(Date.now() - t0 < 10_000, `${what}: took ${Date.now() - t0} ms`);
        assert.equal(await s.put('k', pattern(1, 1)), StoreErrorCode.INVALID_PARAMS, `${what}: not set up`);
      } finally {
        await s.close();
        await fake.close();
      }
    }
    const s = new MooncakeDistributedStore({ env: ENV });
    assert.equal(await s.setup('127.0.0.1', 'P2PHANDSHAKE', '1MB', '1MB', 'tcp', '', deadAddr), StoreErrorCode.RPC_FAIL);
    assert.match(s.getLastError()!.message, /ECONNREFUSED/);
    assert.equal(await s.setup('127.0.0.1', 'P2PHANDSHAKE', '1MB', '1MB', 'rdma', '', master.address), StoreErrorCode.INTERNAL_ERROR);
    assert.match(s.getLastError()!.message, /not supported on this host/);
    await s.close();
  });

  test('after close: calls fail with a code, close is idempotent', async () => {
    const s = await nodeStore(master, { segment: '4MB', buffer: '4MB' });
    assert.equal(await s.close(), 0);
    assert.equal(await s.close(), 0);
    assert.equal(await s.put('k', pattern(1, 1)), StoreErrorCode.INVALID_PARAMS);
    assert.match(s.getLastError()!.message, /closed/);
  });
});
