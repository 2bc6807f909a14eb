/**
 * Interop with real Mooncake peers: the engine of Mooncake's published wheel
 * (test/interop/setup.sh pins it) on the other side, in both roles, data
 * checked byte for byte (SHA-256 on both ends).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { TransferEngine, TransferOpcode, TaskStatus, type TransferRequest } from '../src/core.js';
import { ErrorCode } from '../src/errors.js';
import { encodeHeader, HEADER_SIZE, STATUS_REJECTED_FRAME } from '../src/codec/wire.js';
import { ensureInteropEnv, MooncakeHttpMetadataServer, MooncakePeer, mooncakeBinary, mooncakeEnv, ROOT } from './interop/mooncake.js';
import { MetadataHttpServer } from '../src/metadata/http-server.js';
import { curlEscape } from '../src/metadata/http.js';
import { EtcdCluster, freePort, requireServer } from './servers.js';
import { Etcd3 } from 'etcd3';
import { execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import path from 'node:path';
import { fillPattern } from './pattern.js';
import net from 'node:net';

const skip = ensureInteropEnv();
if (skip) console.warn(`\n*** SKIPPING interop suite: ${skip} ***\n`);

const MiB = 1 << 20;
const execFileP = promisify(execFile);
const BENCH = skip ? '' : mooncakeBinary('transfer_engine_bench');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** Mooncake's transfer_engine_bench as initiator; returns its "Test completed" line. */
async function mooncakeInitiator(segment: string, op: 'read' | 'write', block: number, batch: number): Promise<string> {
  const args = ['--mode=initiator', '--metadata_server=P2PHANDSHAKE', '--protocol=tcp', '--local_server_name=127.0.0.1',
    `--segment_id=${segment}`, `--operation=${op}`, '--duration=2', '--threads=1', `--batch_size=${batch}`, `--block_size=${block}`];
  const { stderr } = await execFileP(BENCH, args, { env: mooncakeEnv({ GLOG_minloglevel: '0' }), timeout: 60_000, killSignal: 'SIGKILL', maxBuffer: 16 << 20 });
  const line = stderr.split('\n').find((l) => l.includes('Test completed'));
  assert.ok(line, `no "Test completed" line from transfer_engine_bench: ${stderr.slice(-1500)}`);
  assert.match(line, /batch count [1-9]\d*/);
  return line;
}
const SIZES = [1, 4096, MiB, 64 * MiB];
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('interop with Mooncake (P2PHANDSHAKE)', { skip: skip ?? false }, () => {
  let ours: TransferEngine;
  let mc: MooncakePeer;
  let local: Buffer;
  let localAddr: number;

  before(async () => {
    ours = new TransferEngine();
    await ours.init('127.0.0.1');
    local = Buffer.alloc(64 * MiB + 4096);
    localAddr = ours.registerLocalMemory(local);
    mc = await MooncakePeer.start();
  });

  after(async () => {
    await ours.close();
    await mc.stop();
  });

  async function run(reqs: TransferRequest[]): Promise<void> {
    const bid = ours.allocateBatchID(reqs.length);
    ours.submitTransfer(bid, reqs);
    const st = await ours.waitBatch(bid);
    ours.freeBatchID(bid);
    for (const [i, s] of st.entries()) assert.equal(s.status, TaskStatus.COMPLETED, `task ${i}: ${s.error?.message ?? TaskStatus[s.status]}`);
  }

  test('our initiator writes to and reads from a Mooncake target, every size', async () => {
    const remote = await mc.alloc(64 * MiB + 4096, true);
    const seg = await ours.openSegment(mc.segment);
    assert.equal(ours.getSegmentDescriptor(seg).buffers[0]!.addr, BigInt(remote.addr), 'the descriptor carries the real pointer');
    for (const [k, size] of SIZES.entries()) {
      const src = local.subarray(0, size);
      fillPattern(src, 500 + k);
      await run([{ opcode: TransferOpcode.WRITE, source: localAddr, targetId: seg, targetOffset: remote.addr + 7, length: size }]);
      assert.equal(await mc.hash(remote.addr + 7, size), sha(src), `WRITE of ${size} bytes`);
      const want = await mc.call('fill_random', { addr: remote.addr + 3, len: size });
      await run([{ opcode: TransferOpcode.READ, source: localAddr + 1, targetId: seg, targetOffset: BigInt(remote.addr + 3), length: size }]);
      assert.equal(sha(local.subarray(1, 1 + size)), want['sha'], `READ of ${size} bytes`);
    }
  });

  test('our initiator: a batch of 128 and an async submit polled to completion', async () => {
    const remote = await mc.alloc(128 * 4096, true);
    const seg = await ours.openSegment(mc.segment);
    fillPattern(local.subarray(0, 128 * 4096), 61);
    await run(
      Array.from({ length: 128 }, (_, i) => ({
        opcode: TransferOpcode.WRITE,
        source: localAddr + i * 4096,
        targetId: seg,
        targetOffset: remote.addr + (127 - i) * 4096, // scattered, reversed
        length: 4096,
      })),
    );
    for (const i of [0, 1, 64, 127]) {
      assert.equal(await mc.hash(remote.addr + (127 - i) * 4096, 4096), sha(local.subarray(i * 4096, (i + 1) * 4096)), `block ${i}`);
    }
    // Async: submit, then poll getTransferStatus (no waitBatch).
    const bid = ours.allocateBatchID(1);
    local.fill(0, 0, MiB);
    ours.submitTransfer(bid, [{ opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: remote.addr, length: 128 * 4096 }]);
    const t0 = Date.now();
    let st = ours.getTransferStatus(bid, 0);
    while (st.status === TaskStatus.WAITING && Date.now() - t0 < 30_000) {
      await new Promise((r) => setImmediate(r));
      st = ours.getTransferStatus(bid, 0);
    }
    assert.equal(st.status, TaskStatus.COMPLETED);
    assert.equal(st.transferred, 128 * 4096);
    ours.freeBatchID(bid);
    assert.equal(sha(local.subarray(0, 128 * 4096)), await mc.hash(remote.addr, 128 * 4096));
  });

  test('a Mooncake initiator writes to and reads from our target, every size', async () => {
    const mcBuf = await mc.alloc(64 * MiB + 4096, true);
    for (const size of SIZES) {
      const w = await mc.call('fill_random', { addr: mcBuf.addr, len: size });
      local.fill(0xab);
      const r = await mc.call('write', { target: ours.segmentName, local: mcBuf.addr, remote: localAddr + 5, len: size });
      assert.equal(r.rc, 0, `Mooncake transfer_sync_write of ${size}`);
      assert.equal(sha(local.subarray(5, 5 + size)), w['sha'], `landed bytes of ${size}`);
      assert.equal(local[4], 0xab, 'byte before untouched');
      assert.equal(local[5 + size], 0xab, 'byte after untouched');
      fillPattern(local.subarray(0, size), size);
      const r2 = await mc.call('read', { target: ours.segmentName, local: mcBuf.addr + 1, remote: localAddr, len: size });
      assert.equal(r2.rc, 0, `Mooncake transfer_sync_read of ${size}`);
      assert.equal(await mc.hash(mcBuf.addr + 1, size), sha(local.subarray(0, size)), `read bytes of ${size}`);
    }
  });

  test('a Mooncake initiator: batch of 128, async batch, submit + check_status', async () => {
    const mcBuf = await mc.alloc(128 * 4096, true);
    const locals = Array.from({ length: 128 }, (_, i) => mcBuf.addr + i * 4096);
    const remotes = Array.from({ length: 128 }, (_, i) => localAddr + (127 - i) * 4096);
    const lens = Array.from({ length: 128 }, () => 4096);
    const r = await mc.call('batch', { op: 'write', target: ours.segmentName, locals, remotes, lens });
    assert.equal(r.rc, 0);
    for (const i of [0, 5, 127]) {
      assert.equal(sha(local.subarray((127 - i) * 4096, (128 - i) * 4096)), await mc.hash(mcBuf.addr + i * 4096, 4096), `block ${i}`);
    }
    fillPattern(local.subarray(0, 128 * 4096), 99);
    const r2 = await mc.call('async', { op: 'read', target: ours.segmentName, locals, remotes, lens });
    assert.equal(r2.rc, 0, 'batch_transfer_async_read + get_batch_transfer_status');
    assert.equal(await mc.hash(mcBuf.addr + 127 * 4096, 4096), sha(local.subarray(0, 4096)));
    const w = await mc.call('fill_random', { addr: mcBuf.addr, len: 65536 });
    const r3 = await mc.call('submit_poll', { target: ours.segmentName, local: mcBuf.addr, remote: localAddr + MiB, len: 65536 });
    assert.equal(r3.rc, 1, 'transfer_check_status reports completed');
    assert.equal(sha(local.subarray(MiB, MiB + 65536)), w['sha']);
  });

  test('notify both ways, probe both ways', async () => {
    const mcBuf = await mc.alloc(4096, true);
    const r = await mc.call('notify', { target: ours.segmentName, local: mcBuf.addr, remote: localAddr, len: 4096, name: 'from-python', msg: 'kv ready' });
    assert.equal(r.rc, 0);
    assert.deepEqual(ours.getNotifies(), [{ name: 'from-python', msg: 'kv ready' }]);
    await ours.sendNotify(mc.segment, { name: 'from-node', msg: 'ünïcode ✓' });
    const got = await mc.call('notifies');
    assert.deepEqual(got['notifies'], [{ name: 'from-node', msg: 'ünïcode ✓' }]);
    assert.equal((await mc.call('probe', { segment: ours.segmentName })).rc, 0);
    await ours.sendProbe(mc.segment);
  });

  test("get_first_buffer_address from Python returns our first buffer", async () => {
    const r = await mc.call('first_buffer', { segment: ours.segmentName });
    assert.equal(r['addr'], localAddr);
  });

  test('a Mooncake initiator sending an address outside our regions is rejected; we keep serving', async () => {
    const mcBuf = await mc.alloc(4096, true);
    const served = ours.stats().requestsRejected;
    const bad = await mc.call('write', { target: ours.segmentName, local: mcBuf.addr, remote: localAddr + local.length - 100, len: 4096 });
    assert.ok(typeof bad.rc === 'number' && bad.rc < 0, `Mooncake reports failure (rc ${String(bad.rc)})`);
    assert.equal(ours.stats().requestsRejected, served + 1);
    // Our rejection bytes are exactly Mooncake's v2 frame (checked on a raw socket here).
    const sock = net.connect(ours.dataPort, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const h = Buffer.alloc(HEADER_SIZE);
    encodeHeader(h, 0, 8, 0x10, true, true);
    sock.write(h);
    const reply = await new Promise<Buffer>((resolve) => {
      const parts: Buffer[] = [];
      sock.on('data', (d: Buffer) => parts.push(d));
      sock.on('close', () => resolve(Buffer.concat(parts)));
    });
    assert.deepEqual(reply, STATUS_REJECTED_FRAME);
    const ok = await mc.call('write', { target: ours.segmentName, local: mcBuf.addr, remote: localAddr, len: 4096 });
    assert.equal(ok.rc, 0, 'the next request from Mooncake is served');
    assert.equal(sha(local.subarray(0, 4096)), mcBuf.sha);
  });

  test("a Mooncake target gone, its data port taken by another process: our stale requests never reach it", async () => {
    // README, Engine identity: Mooncake peers carry no engine id, so a new connection to one first fetches its
    // descriptor again (when the one held is over a second old); the dead peer's name no longer answers.
    const first = await MooncakePeer.start();
    const impostor = net.createServer();
    let received = 0;
    impostor.on('connection', (sock) => {
      sock.on('data', (d: Buffer) => (received += d.length));
      sock.on('error', () => {});
    });
    try {
      const a = await first.alloc(MiB, true);
      const seg = await ours.openSegment(first.segment);
      fillPattern(local.subarray(0, MiB), 77);
      await run([{ opcode: TransferOpcode.WRITE, source: localAddr, targetId: seg, targetOffset: a.addr, length: MiB }]);
      assert.equal(await first.hash(a.addr, MiB), sha(local.subarray(0, MiB)));
      const dataPort = ours.getSegmentDescriptor(seg).tcpDataPort;
      await first.stop();
      // Another process listens on the dead peer's data port and takes whatever comes.
      await new Promise<void>((resolve, reject) => {
        impostor.once('error', reject);
        impostor.listen(dataPort, '127.0.0.1', () => resolve());
      });
      await new Promise((r) => setTimeout(r, 1100)); // the descriptor held is now over a second old
      const bid = ours.allocateBatchID(1);
      ours.submitTransfer(bid, [{ opcode: TransferOpcode.WRITE, source: localAddr, targetId: seg, targetOffset: a.addr, length: 4096 }]);
      const [st] = await ours.waitBatch(bid);
      ours.freeBatchID(bid);
      assert.equal(st!.status, TaskStatus.FAILED);
      assert.equal(st!.error?.code, ErrorCode.PEER_UNREACHABLE, st!.error?.message);
      assert.equal(received, 0, 'not a byte was sent to the process now holding the port');
    } finally {
      await first.stop();
      await new Promise<void>((r) => impostor.close(() => r()));
    }
  });

  test('ours receiving a rejection from Mooncake: task FAILED with TE_ADDRESS_REJECTED', async () => {
    const seg = await ours.openSegment(mc.segment);
    const bid = ours.allocateBatchID(2);
    const remote = await mc.alloc(4096);
    ours.submitTransfer(bid, [
      { opcode: TransferOpcode.WRITE, source: localAddr, targetId: seg, targetOffset: 0x1000, length: 64 },
      { opcode: TransferOpcode.WRITE, source: localAddr, targetId: seg, targetOffset: remote.addr, length: 64 },
    ]);
    const st = await ours.waitBatch(bid);
    ours.freeBatchID(bid);
    assert.equal(st[0]!.status, TaskStatus.FAILED);
    assert.equal(st[0]!.error?.code, ErrorCode.ADDRESS_REJECTED);
    assert.equal(st[1]!.status, TaskStatus.COMPLETED, 'the good request beside it still lands');
  });

  test("Mooncake's transfer_engine_bench as initiator against our bench target (write and read)", async () => {
    const target = spawn(process.execPath, [CLI, 'bench', '--mode=target', '--local_segment=127.0.0.1', '--size=65536', '--batch=64', '--threads=1', '--json'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const first = await createInterface({ input: target.stdout! })[Symbol.asyncIterator]().next();
      const ready = JSON.parse(String(first.value)) as { segment: string; buffer_bytes: number };
      assert.ok(ready.buffer_bytes >= 65536 * 64, 'the target publishes a buffer of at least block x batch x threads');
      await mooncakeInitiator(ready.segment, 'write', 65536, 64);
      await mooncakeInitiator(ready.segment, 'read', 65536, 64);
    } finally {
      const exited = new Promise((r) => target.once('exit', r));
      target.kill('SIGTERM');
      await exited;
    }
  });

  test("transfer_engine_bench writes land exactly where it addresses them (checked by us)", async () => {
    // Its initiator sends its zero-filled buffers to remote_base + block*i: our region starts
    // patterned, so afterwards exactly [base, base+block*batch) must be zero and the rest intact.
    const target = new TransferEngine();
    await target.init('127.0.0.1');
    try {
      const block = 4096;
      const batch = 32;
      const mem = Buffer.alloc(block * batch + 8192);
      fillPattern(mem, 7);
      const tail = Buffer.from(mem.subarray(block * batch));
      target.registerLocalMemory(mem, 'cpu:0');
      await mooncakeInitiator(target.segmentName, 'write', block, batch);
      assert.ok(mem.subarray(0, block * batch).equals(Buffer.alloc(block * batch)), 'every addressed block holds what the bench sent');
      assert.ok(mem.subarray(block * batch).equals(tail), 'nothing past the addressed range was written');
    } finally {
      await target.close();
    }
  });

  test("our bench initiator against Mooncake's transfer_engine_bench target, integrity checked", async () => {
    const target = spawn(BENCH, ['--mode=target', '--metadata_server=P2PHANDSHAKE', '--protocol=tcp', '--local_server_name=127.0.0.1', '--buffer_size=67108864'], {
      env: mooncakeEnv({ GLOG_minloglevel: '0' }),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    try {
      let log = '';
      const segment = await new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no segment name from the Mooncake target: ${log}`)), 30_000);
        target.stderr!.on('data', (d: Buffer) => {
          log += d.toString();
          const m = /listening on (\S+:\d+)/.exec(log);
          if (m) {
            clearTimeout(t);
            resolve(m[1]!);
          }
        });
      });
      // The target registers its buffer right after announcing the port.
      await new Promise((r) => setTimeout(r, 500));
      const { stdout } = await execFileP(
        process.execPath,
        [CLI, 'bench', `--remote_segment=${segment}`, '--workload=mix', '--integrity_check', '--size=65536', '--batch=16', '--duration=2', '--json'],
        { timeout: 60_000, killSignal: 'SIGKILL' }, // a hung bench fails the test instead of wedging the suite
      );
      const result = JSON.parse(stdout.trim().split('\n').pop()!) as { integrity: string; failures: number; bytes: number };
      assert.equal(result.integrity, 'passed');
      assert.equal(result.failures, 0);
      assert.ok(result.bytes > 0);
    } finally {
      const exited = new Promise((r) => target.once('exit', r));
      target.kill('SIGTERM');
      await exited;
    }
  });
});

// ----------------------------------------------------- central metadata stores

/** A central metadata store both engines use, and a way to see exactly what it holds. */
interface CentralStore {
  /** Our engine's metadataServer. */
  conn: string;
  /** The Mooncake engine's initialize (or initialize_ext with metadataType) arguments. */
  mc: { metadata: string; metadataType?: string };
  /** etcd values end in "\n" (jsoncpp FastWriter); HTTP values do not (StreamWriterBuilder). */
  newline: boolean;
  /** A value straight from the store, or null. */
  get(key: string): Promise<string | null>;
  /** Assert that the store holds exactly these keys, nothing else. */
  assertKeys(expected: string[]): Promise<void>;
  stop(): Promise<void>;
}

async function eventually(what: string, ms: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Our bundled server, in this process. It cannot list keys: the count plus a GET of each expected key is exact. */
async function ourHttpServer(): Promise<CentralStore> {
  const server = await MetadataHttpServer.start({ host: '127.0.0.1', port: 0 });
  const get = async (key: string): Promise<string | null> => {
    const r = await fetch(`${server.url}?key=${encodeURIComponent(key)}`);
    return r.status === 404 ? null : r.text();
  };
  return {
    conn: server.url,
    mc: { metadata: server.url }, // initialize(name, "http://...")
    newline: false,
    get,
    async assertKeys(expected) {
      for (const k of expected) assert.notEqual(await get(k), null, `${k} is stored`);
      assert.equal(server.size, expected.length, `the server holds exactly ${JSON.stringify(expected)}`);
    },
    stop: () => server.close(),
  };
}

/** Mooncake's server from the wheel; what it holds is followed through its access log. */
async function mooncakeHttpServer(): Promise<CentralStore> {
  const server = await MooncakeHttpMetadataServer.start(await freePort());
  return {
    conn: server.url,
    // initialize_ext(name, "127.0.0.1:P/metadata", "tcp", "", "http"): Mooncake prefixes "http://".
    mc: { metadata: server.url.replace('http://', ''), metadataType: 'http' },
    newline: false,
    get: (k) => server.get(k),
    async assertKeys(expected) {
      for (const k of expected) assert.notEqual(await server.get(k), null, `${k} is stored`);
      // Both engines' clients escape keys as curl_easy_escape does (what reached the server, raw).
      for (const r of server.requests) assert.equal(r.raw, curlEscape(r.key), `${r.method} ${r.key} escaped as curl does`);
      const want = [...expected].sort();
      await eventually('the access log shows exactly the expected keys', 5000, () => JSON.stringify(server.keys()) === JSON.stringify(want)).catch(() => undefined);
      assert.deepEqual(server.keys(), want, `keys held by Mooncake's server (from its access log)`);
    },
    stop: () => server.stop(),
  };
}

/** A one-member etcd (test/servers.ts); its whole key space is listed. */
async function etcdStore(bin: string): Promise<CentralStore> {
  const cluster = await EtcdCluster.start(bin, 1);
  const client = new Etcd3({ hosts: cluster.members[0]!.endpoint });
  const hostPort = cluster.connString.replace('etcd://', '');
  return {
    conn: cluster.connString, // etcd://127.0.0.1:P
    mc: { metadata: hostPort, metadataType: 'etcd' }, // initialize_ext(name, "127.0.0.1:P", "tcp", "", "etcd")
    newline: true,
    get: (k) => client.get(k).string(),
    async assertKeys(expected) {
      assert.deepEqual((await client.getAll().keys()).sort(), [...expected].sort(), 'every key in etcd');
    },
    async stop() {
      client.close();
      await cluster.stop();
    },
  };
}

const CENTRAL_SIZES = [1, 4096, MiB];

/**
 * The HTTP servers (Mooncake's and ours) refuse to overwrite an existing rpc_meta key; etcd is a plain Put
 * where the last writer wins. Our engine looks before it writes, so a live namesake is refused on every store.
 */
function centralSuite(label: string, slug: string, skipWhy: string | false, open: () => Promise<CentralStore>): void {
  describe(`interop with Mooncake, metadata through ${label}`, { skip: skipWhy }, () => {
    // Names are keys: unique per store, no ':' needed (central names stay as given).
    const OURS = `node-${slug}`;
    const THEIRS = `mc-${slug}`;
    const keysOf = (name: string): string[] => [`mooncake/ram/${name}`, `mooncake/rpc_meta/${name}`];
    let store: CentralStore;
    let ours: TransferEngine;
    let mc: MooncakePeer;
    let local: Buffer;
    let localAddr: number;
    let remote: { addr: number };

    before(async () => {
      store = await open();
      ours = new TransferEngine({ metadataServer: store.conn });
      await ours.init(OURS, '127.0.0.1'); // rpc_meta ip_or_host_name: 127.0.0.1
      local = Buffer.alloc(MiB + 4096);
      localAddr = ours.registerLocalMemory(local);
      await ours.flushMetadata(); // registered before any peer caches our descriptor
      mc = await MooncakePeer.start({ ...store.mc, name: THEIRS });
      remote = await mc.alloc(MiB + 4096, true); // Mooncake re-PUTs its descriptor before returning
    });

    after(async () => {
      await ours?.close();
      await mc?.stop();
      await store?.stop();
    });

    async function run(reqs: TransferRequest[]): Promise<void> {
      const bid = ours.allocateBatchID(reqs.length);
      ours.submitTransfer(bid, reqs);
      const st = await ours.waitBatch(bid);
      ours.freeBatchID(bid);
      for (const [i, s] of st.entries()) assert.equal(s.status, TaskStatus.COMPLETED, `task ${i}: ${s.error?.message ?? TaskStatus[s.status]}`);
    }

    test("both engines publish exactly Mooncake's keys; values as Mooncake writes them", async () => {
      assert.equal(ours.segmentName, OURS, 'central modes keep the name as given');
      assert.equal(mc.segment, THEIRS);
      await store.assertKeys([...keysOf(OURS), ...keysOf(THEIRS)]);
      const nl = store.newline ? '\n' : '';
      assert.equal(await store.get(`mooncake/rpc_meta/${OURS}`), `{"ip_or_host_name":"127.0.0.1","rpc_port":${ours.rpcPort}}${nl}`);
      assert.equal(await store.get(`mooncake/rpc_meta/${THEIRS}`), `{"ip_or_host_name":"127.0.0.1","rpc_port":${mc.rpcPort}}${nl}`, "Mooncake's own rpc_meta, same bytes");
      const mine = (await store.get(`mooncake/ram/${OURS}`))!;
      const theirs = (await store.get(`mooncake/ram/${THEIRS}`))!;
      assert.equal(mine.endsWith('\n'), store.newline, 'our descriptor value: trailing newline as Mooncake writes it for this store');
      assert.equal(theirs.endsWith('\n'), store.newline, "Mooncake's descriptor value: the same");
      const d = JSON.parse(mine) as Record<string, unknown>;
      const keys = Object.keys(d);
      assert.deepEqual(keys, [...keys].sort(), 'keys sorted, as jsoncpp writes them');
      assert.deepEqual(d['buffers'], [{ addr: localAddr, length: local.length, name: OURS }]);
      assert.equal(d['name'], OURS);
      assert.equal(d['protocol'], 'tcp');
      assert.equal(d['tcp_data_port'], ours.dataPort);
      const t = JSON.parse(theirs) as Record<string, unknown>;
      assert.deepEqual(t['buffers'], [{ addr: remote.addr, length: MiB + 4096, name: THEIRS }]);
      assert.equal(t['name'], THEIRS);
    });

    test('our initiator writes to and reads from the Mooncake target found through the store', async () => {
      const seg = await ours.openSegment(THEIRS);
      assert.equal(ours.getSegmentDescriptor(seg).buffers[0]!.addr, BigInt(remote.addr));
      for (const [k, size] of CENTRAL_SIZES.entries()) {
        const src = local.subarray(0, size);
        fillPattern(src, 700 + k);
        await run([{ opcode: TransferOpcode.WRITE, source: localAddr, targetId: seg, targetOffset: remote.addr + 7, length: size }]);
        assert.equal(await mc.hash(remote.addr + 7, size), sha(src), `WRITE of ${size} bytes`);
        const want = await mc.call('fill_random', { addr: remote.addr + 3, len: size });
        await run([{ opcode: TransferOpcode.READ, source: localAddr + 1, targetId: seg, targetOffset: remote.addr + 3, length: size }]);
        assert.equal(sha(local.subarray(1, 1 + size)), want['sha'], `READ of ${size} bytes`);
      }
    });

    test('a Mooncake initiator writes to and reads from our target found through the store', async () => {
      for (const size of CENTRAL_SIZES) {
        const w = await mc.call('fill_random', { addr: remote.addr, len: size });
        local.fill(0xab);
        const r = await mc.call('write', { target: OURS, local: remote.addr, remote: localAddr + 5, len: size });
        assert.equal(r.rc, 0, `Mooncake transfer_sync_write of ${size}: ${mc.stderr.slice(-1500)}`);
        assert.equal(sha(local.subarray(5, 5 + size)), w['sha'], `landed bytes of ${size}`);
        assert.equal(local[4], 0xab, 'byte before untouched');
        assert.equal(local[5 + size], 0xab, 'byte after untouched');
        fillPattern(local.subarray(0, size), size + 1);
        const r2 = await mc.call('read', { target: OURS, local: remote.addr + 1, remote: localAddr, len: size });
        assert.equal(r2.rc, 0, `Mooncake transfer_sync_read of ${size}: ${mc.stderr.slice(-1500)}`);
        assert.equal(await mc.hash(remote.addr + 1, size), sha(local.subarray(0, size)), `read bytes of ${size}`);
      }
    });

    test('get_first_buffer_address from Python on our segment returns our first buffer', async () => {
      const r = await mc.call('first_buffer', { segment: OURS });
      assert.equal(r['addr'], localAddr);
    });

    test('a second engine of ours under the live Mooncake name is refused; Mooncake keeps its keys', async () => {
      const before = { rpc: await store.get(`mooncake/rpc_meta/${THEIRS}`), ram: await store.get(`mooncake/ram/${THEIRS}`) };
      const clash = new TransferEngine({ metadataServer: store.conn });
      await assert.rejects(clash.init(THEIRS, '127.0.0.1'), (e: unknown) => {
        assert.ok(e instanceof Error && 'code' in e && e.code === ErrorCode.METADATA_REJECTED, String(e));
        assert.match(e.message, /in use/);
        return true;
      });
      await clash.close();
      assert.equal(await store.get(`mooncake/rpc_meta/${THEIRS}`), before.rpc, "Mooncake's rpc_meta untouched");
      assert.equal(await store.get(`mooncake/ram/${THEIRS}`), before.ram, "Mooncake's descriptor untouched");
      await store.assertKeys([...keysOf(OURS), ...keysOf(THEIRS)]);
      const r = await mc.call('probe', { segment: OURS });
      assert.equal(r.rc, 0, 'Mooncake still reaches us');
    });

    test('after both engines close, their keys are gone', async () => {
      await ours.close();
      await store.assertKeys(keysOf(THEIRS));
      await mc.stop(); // the driver destroys the engine: Mooncake deletes its keys too
      await store.assertKeys([]);
      for (const k of [...keysOf(OURS), ...keysOf(THEIRS)]) assert.equal(await store.get(k), null, `${k} deleted`);
    });
  });
}

centralSuite('HTTP (our bundled server)', 'ourhttp', skip ?? false, ourHttpServer);
centralSuite("HTTP (Mooncake's server from the wheel)", 'mchttp', skip ?? false, mooncakeHttpServer);
const etcd = skip ? { path: '', skip } : requireServer('etcd');
centralSuite('etcd', 'etcd', etcd.skip, () => etcdStore(etcd.path));
