/**
 * Bad input at the engine API, and peers that vanish: typed errors, nothing
 * submitted on a refused call, no hang, no leaked ports or pins.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  TransferEngine,
  TransferOpcode,
  TaskStatus,
  LOCAL_SEGMENT,
  TransferEngineError,
  type TransferRequest,
  type TransferStatus,
} from '../src/core.js';
import { spawnPeer, sha256 } from './helpers.js';
import { patternBuffer } from './pattern.js';

const U64_MAX = (1n << 64n) - 1n;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Matches a TransferEngineError with this code (for assert.throws / assert.rejects). */
function te(code: string): (e: unknown) => boolean {
  return (e: unknown): boolean => {
    assert.ok(e instanceof TransferEngineError, `expected a TransferEngineError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  };
}

/** Resolve `p`, or fail the test if it takes more than `ms` (a hang, not a slow run). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A port on 127.0.0.1 that nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen({ host: '127.0.0.1', port: 0 }, () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Bind host:port ourselves; true when it was free. */
async function canBind(port: number): Promise<boolean> {
  const s = net.createServer();
  const ok = await new Promise<boolean>((resolve) => {
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve(true));
  });
  if (ok) await new Promise<void>((r) => s.close(() => r()));
  return ok;
}

async function newEngine(): Promise<TransferEngine> {
  const e = new TransferEngine();
  await e.init('127.0.0.1');
  return e;
}

describe('engine: ports and unreachable peers', () => {
  it('openSegment of a name nobody serves rejects quickly with TE_PEER_UNREACHABLE', async () => {
    const e = await newEngine();
    try {
      const port = await closedPort();
      await within(assert.rejects(e.openSegment(`127.0.0.1:${port}`), te('TE_PEER_UNREACHABLE')), 3000, 'openSegment');
      // Nothing is cached for it: a second attempt fails the same way.
      await within(assert.rejects(e.openSegment(`127.0.0.1:${port}`), te('TE_PEER_UNREACHABLE')), 3000, 'openSegment');
      await assert.rejects(e.openSegment(''), te('TE_INVALID_ARGUMENT'));
      await assert.rejects(e.openSegment('///'), te('TE_INVALID_ARGUMENT'));
    } finally {
      await e.close();
    }
  });

  it('init with an rpcPort already in use: TE_PORT_IN_USE, nothing left bound, a retry works', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen({ host: '127.0.0.1', port: 0 }, () => r()));
    const busy = (blocker.address() as net.AddressInfo).port;
    const e = new TransferEngine();
    try {
      await assert.rejects(e.init('127.0.0.1', undefined, busy), te('TE_PORT_IN_USE'));
      assert.throws(() => e.rpcPort, te('TE_NOT_INITIALIZED'));
      await new Promise<void>((r) => blocker.close(() => r()));
      assert.equal(await canBind(busy), true, 'the port stayed bound after the failed init');
      // The same engine can be initialised again.
      await e.init('127.0.0.1');
      assert.notEqual(e.rpcPort, busy);
      const addr = e.registerLocalMemory(Buffer.alloc(4096));
      assert.ok(addr > 0);
    } finally {
      if (blocker.listening) blocker.close();
      await e.close();
    }
  });

  it('init whose data port cannot be bound releases the RPC port it already bound', async () => {
    // The data port's range is one port, held by someone else; the RPC port is given apart.
    const only = await closedPort();
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen({ host: '127.0.0.1', port: only }, () => r()));
    const rpc = await closedPort();
    const e = new TransferEngine({ config: { minPort: only, maxPort: only } });
    try {
      await assert.rejects(e.init('127.0.0.1', undefined, rpc), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'TE_PORT_IN_USE');
        assert.match(err.message, /^the data port: /);
        return true;
      });
      assert.equal(await canBind(rpc), true, 'the RPC port stayed bound after the failed init');
    } finally {
      await e.close();
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });

  it('init with bad arguments: TE_INVALID_ARGUMENT, and the engine stays usable', async () => {
    const e = new TransferEngine();
    try {
      await assert.rejects(e.init(''), te('TE_INVALID_ARGUMENT'));
      await assert.rejects(e.init('127.0.0.1', ''), te('TE_INVALID_ARGUMENT'));
      for (const p of [-1, 65536, 1.5, Number.NaN]) await assert.rejects(e.init('127.0.0.1', undefined, p), te('TE_INVALID_ARGUMENT'));
      await e.init('127.0.0.1');
      await assert.rejects(e.init('127.0.0.1'), te('TE_ALREADY_INITIALIZED'));
    } finally {
      await e.close();
    }
    await assert.rejects(e.init('127.0.0.1'), te('TE_CLOSED'));
  });

  it('a peer SIGKILLed mid-transfer of large writes: tasks FAILED (no hang), another live peer still works', async () => {
    const SIZE = 64 * 1024 * 1024;
    const doomed = await spawnPeer();
    const alive = await spawnPeer();
    const e = await newEngine();
    try {
      const remoteDoomed = await doomed.register(SIZE);
      const remoteAlive = await alive.register(1024 * 1024);
      const src = patternBuffer(SIZE, 42);
      const srcAddr = e.registerLocalMemory(src);
      const segDoomed = await e.openSegment(doomed.segmentName);
      const segAlive = await e.openSegment(alive.segmentName);
      const N = 6;
      const bid = e.allocateBatchID(N);
      e.submitTransfer(
        bid,
        Array.from({ length: N }, (): TransferRequest => ({ opcode: TransferOpcode.WRITE, source: srcAddr, targetId: segDoomed, targetOffset: remoteDoomed, length: SIZE })),
      );
      const done = e.waitBatch(bid);
      // Kill as soon as the first megabytes are acknowledged.
      await within(
        (async () => {
          while (!Array.from({ length: N }, (_, i) => e.getTransferStatus(bid, i)).some((s) => s.transferred > 0)) await sleep(1);
        })(),
        10_000,
        'first progress',
      );
      doomed.kill();
      const st = await within(done, 15_000, 'waitBatch after the peer died');
      for (const s of st) assert.ok(s.status === TaskStatus.COMPLETED || s.status === TaskStatus.FAILED, `status ${TaskStatus[s.status]}`);
      const failed = st.filter((s) => s.status === TaskStatus.FAILED);
      assert.ok(failed.length > 0, 'every 64 MiB write completed before the kill: the test did not test anything');
      for (const s of failed) {
        assert.equal(s.error?.code, 'TE_PEER_UNREACHABLE');
        assert.ok(s.transferred < SIZE);
      }
      e.freeBatchID(bid);
      // New transfers to the dead peer fail quickly rather than hang.
      const bid2 = e.allocateBatchID(1);
      e.submitTransfer(bid2, [{ opcode: TransferOpcode.READ, source: srcAddr, targetId: segDoomed, targetOffset: remoteDoomed, length: 4096 }]);
      const [dead] = await within(e.waitBatch(bid2), 10_000, 'transfer to a dead peer');
      assert.equal(dead!.status, TaskStatus.FAILED);
      assert.equal(dead!.error?.code, 'TE_PEER_UNREACHABLE');
      // The live peer is unaffected.
      const bid3 = e.allocateBatchID(1);
      e.submitTransfer(bid3, [{ opcode: TransferOpcode.WRITE, source: srcAddr, targetId: segAlive, targetOffset: remoteAlive, length: 1024 * 1024 }]);
      const [ok] = await within(e.waitBatch(bid3), 10_000, 'transfer to the live peer');
      assert.equal(ok!.status, TaskStatus.COMPLETED);
      assert.equal(await alive.hash(remoteAlive, 1024 * 1024), sha256(src.subarray(0, 1024 * 1024)));
      assert.equal(alive.child.exitCode, null);
      // No slice kept the source region pinned.
      e.unregisterLocalMemory(srcAddr);
    } finally {
      await e.close();
      doomed.kill();
      await alive.stop();
    }
  });
});

describe('engine: refused calls submit nothing', () => {
  let e: TransferEngine;
  let peer: TransferEngine;
  let remoteMem: Buffer;
  let remote = 0;
  let seg = 0;
  let srcA = 0;
  let srcB = 0;
  const REGION = 64 * 1024;

  before(async () => {
    e = await newEngine();
    peer = await newEngine();
    remoteMem = patternBuffer(REGION, 7);
    remote = peer.registerLocalMemory(remoteMem);
    srcA = e.registerLocalMemory(patternBuffer(REGION, 1));
    srcB = e.registerLocalMemory(patternBuffer(REGION, 2));
    seg = await e.openSegment(peer.segmentName);
  });

  after(async () => {
    await e.close();
    await peer.close();
  });

  const good = (): TransferRequest => ({ opcode: TransferOpcode.WRITE, source: srcA, targetId: seg, targetOffset: remote, length: 4096 });

  /** Submitting [good, bad] throws `code`; the batch stays empty. */
  async function refused(bad: TransferRequest, code: string, label: string): Promise<void> {
    const bid = e.allocateBatchID(4);
    assert.throws(() => e.submitTransfer(bid, [good(), bad]), te(code), label);
    assert.deepEqual(await e.waitBatch(bid), [], `${label}: something was submitted`);
    assert.throws(() => e.getTransferStatus(bid, 0), te('TE_INVALID_ARGUMENT'));
    e.freeBatchID(bid);
  }

  it('bad requests: typed errors and nothing submitted (peer memory untouched, no request reached it)', async () => {
    const g = good();
    const cases: Array<[Partial<Record<keyof TransferRequest, unknown>>, string, string]> = [
      [{ opcode: 2 }, 'TE_INVALID_ARGUMENT', 'unknown opcode'],
      [{ opcode: -1 }, 'TE_INVALID_ARGUMENT', 'negative opcode'],
      [{ opcode: 'WRITE' }, 'TE_INVALID_ARGUMENT', 'string opcode'],
      [{ source: 12345 }, 'TE_ADDRESS_NOT_REGISTERED', 'source not registered'],
      [{ source: 0 }, 'TE_INVALID_ARGUMENT', 'source 0'],
      [{ source: -4096 }, 'TE_INVALID_ARGUMENT', 'negative source'],
      [{ source: 2 ** 60 }, 'TE_INVALID_ARGUMENT', 'unsafe source'],
      [{ source: srcA + REGION - 10, length: 100 }, 'TE_ADDRESS_NOT_REGISTERED', 'source past its region end'],
      [{ source: srcA + REGION - 10, length: srcB - srcA + 20 }, 'TE_ADDRESS_NOT_REGISTERED', 'source spanning two regions'],
      [{ length: 0 }, 'TE_INVALID_ARGUMENT', 'length 0'],
      [{ length: -1 }, 'TE_INVALID_ARGUMENT', 'negative length'],
      [{ length: 1.5 }, 'TE_INVALID_ARGUMENT', 'non-integer length'],
      [{ length: Number.NaN }, 'TE_INVALID_ARGUMENT', 'NaN length'],
      [{ length: '4096' }, 'TE_INVALID_ARGUMENT', 'string length'],
      [{ targetOffset: -1 }, 'TE_INVALID_ARGUMENT', 'negative targetOffset'],
      [{ targetOffset: -1n }, 'TE_INVALID_ARGUMENT', 'negative bigint targetOffset'],
      [{ targetOffset: 1.5 }, 'TE_INVALID_ARGUMENT', 'non-integer targetOffset'],
      [{ targetOffset: 2 ** 53 }, 'TE_INVALID_ARGUMENT', 'unsafe number targetOffset'],
      [{ targetOffset: Number.NaN }, 'TE_INVALID_ARGUMENT', 'NaN targetOffset'],
      [{ targetOffset: U64_MAX - 10n }, 'TE_INVALID_ARGUMENT', 'targetOffset + length overflows u64'],
      [{ targetOffset: 1n << 64n }, 'TE_INVALID_ARGUMENT', 'targetOffset above u64'],
      [{ targetOffset: '0x1000' }, 'TE_INVALID_ARGUMENT', 'string targetOffset'],
      [{ targetId: 999 }, 'TE_INVALID_SEGMENT', 'unknown segment handle'],
      [{ targetId: -1 }, 'TE_INVALID_SEGMENT', 'negative segment handle'],
      [{ targetId: LOCAL_SEGMENT, targetOffset: 77 }, 'TE_ADDRESS_NOT_REGISTERED', 'local segment, unregistered target'],
      [{ targetId: LOCAL_SEGMENT, targetOffset: srcB + REGION - 8 }, 'TE_ADDRESS_NOT_REGISTERED', 'local segment, target past the end'],
    ];
    for (const [patch, code, label] of cases) {
      await refused({ ...g, ...patch } as TransferRequest, code, label);
    }
    const bid = e.allocateBatchID(4);
    assert.throws(() => e.submitTransfer(bid, [good(), null as unknown as TransferRequest]), te('TE_INVALID_ARGUMENT'));
    assert.throws(() => e.submitTransfer(bid, 'nope' as unknown as TransferRequest[]), te('TE_INVALID_ARGUMENT'));
    assert.deepEqual(await e.waitBatch(bid), []);
    e.freeBatchID(bid);
    await sleep(100);
    assert.equal(peer.stats().requestsServed, 0, 'a request reached the peer');
    assert.ok(remoteMem.equals(patternBuffer(REGION, 7)), 'peer memory changed');
    assert.ok(Buffer.from(e.localView(srcB, REGION)).equals(patternBuffer(REGION, 2)), 'local region B changed');
  });

  it('more requests than the batch capacity: TE_BATCH_FULL, earlier tasks kept, nothing more submitted', async () => {
    const bid = e.allocateBatchID(2);
    assert.throws(() => e.submitTransfer(bid, [good(), good(), good()]), te('TE_BATCH_FULL'));
    assert.deepEqual(await e.waitBatch(bid), []);
    e.submitTransfer(bid, [good()]);
    assert.throws(() => e.submitTransfer(bid, [good(), good()]), te('TE_BATCH_FULL'));
    const st = await e.waitBatch(bid);
    assert.equal(st.length, 1);
    assert.equal(st[0]!.status, TaskStatus.COMPLETED);
    assert.throws(() => e.getTransferStatus(bid, 1), te('TE_INVALID_ARGUMENT'));
    e.submitTransfer(bid, [good()]); // exactly full is fine
    assert.equal((await e.waitBatch(bid)).length, 2);
    e.freeBatchID(bid);
  });

  it('bad batch ids and sizes', async () => {
    for (const n of [0, -1, 1.5, Number.NaN]) assert.throws(() => e.allocateBatchID(n), te('TE_INVALID_ARGUMENT'));
    assert.throws(() => e.submitTransfer(424242, [good()]), te('TE_INVALID_BATCH'));
    assert.throws(() => e.getTransferStatus(424242, 0), te('TE_INVALID_BATCH'));
    assert.throws(() => e.freeBatchID(424242), te('TE_INVALID_BATCH'));
    await assert.rejects(e.waitBatch(424242), te('TE_INVALID_BATCH'));
    const bid = e.allocateBatchID(1);
    e.freeBatchID(bid);
    assert.throws(() => e.freeBatchID(bid), te('TE_INVALID_BATCH'));
    assert.throws(() => e.submitTransfer(bid, [good()]), te('TE_INVALID_BATCH'));
  });
});

describe('engine: busy resources, lifecycle, close with transfers in flight', () => {
  let peer: TransferEngine;
  let remoteMem: Buffer;
  let remote = 0;
  const BIG = 32 * 1024 * 1024;
  const GUARD = 64 * 1024;

  before(async () => {
    peer = await newEngine();
    remoteMem = patternBuffer(BIG + 2 * GUARD, 8);
    remote = peer.registerLocalMemory(remoteMem);
  });

  after(async () => {
    await peer.close();
  });

  it('freeBatchID with unfinished tasks: TE_BATCH_BUSY; unregister of a region in use: TE_REGION_BUSY; both succeed after', async () => {
    const e = await newEngine();
    try {
      const src = patternBuffer(BIG, 3);
      const srcAddr = e.registerLocalMemory(src);
      const other = e.registerLocalMemory(Buffer.alloc(4096));
      const seg = await e.openSegment(peer.segmentName);
      const bid = e.allocateBatchID(1);
      e.submitTransfer(bid, [{ opcode: TransferOpcode.WRITE, source: srcAddr, targetId: seg, targetOffset: remote + GUARD, length: BIG }]);
      assert.throws(() => e.freeBatchID(bid), te('TE_BATCH_BUSY'));
      assert.throws(() => e.unregisterLocalMemory(srcAddr), te('TE_REGION_BUSY'));
      // The batch form checks everything first: the idle region is not removed either.
      assert.throws(() => e.unregisterLocalMemoryBatch([other, srcAddr]), te('TE_REGION_BUSY'));
      assert.equal(e.localView(other, 4096).length, 4096, 'the batch unregister removed a region before refusing');
      const [st] = await within(e.waitBatch(bid), 20_000, 'the 32 MiB write');
      assert.equal(st!.status, TaskStatus.COMPLETED);
      assert.equal(st!.transferred, BIG);
      assert.ok(remoteMem.subarray(GUARD, GUARD + BIG).equals(src));
      e.freeBatchID(bid);
      e.unregisterLocalMemory(srcAddr);
      e.unregisterLocalMemoryBatch([other]);
      assert.throws(() => e.unregisterLocalMemory(srcAddr), te('TE_INVALID_ARGUMENT'));
    } finally {
      await e.close();
      patternBuffer(BIG + 2 * GUARD, 8).copy(remoteMem);
    }
  });

  it('bad memory registration: typed errors, and a failed batch registers nothing', async () => {
    const e = await newEngine();
    try {
      assert.throws(() => e.registerLocalMemory(Buffer.alloc(0)), te('TE_INVALID_ARGUMENT'));
      assert.throws(() => e.registerLocalMemory('abc' as unknown as Buffer), te('TE_INVALID_ARGUMENT'));
      assert.throws(() => e.registerLocalMemory(Buffer.alloc(16), ''), te('TE_INVALID_ARGUMENT'));
      assert.throws(() => e.registerLocalMemory(Buffer.alloc(16), 'cuda:0'), te('TE_NOT_SUPPORTED'));
      assert.throws(() => e.registerLocalMemory(Buffer.alloc(16), '*', 'yes' as unknown as boolean), te('TE_INVALID_ARGUMENT'));
      assert.throws(() => e.registerLocalMemoryBatch([Buffer.alloc(16), Buffer.alloc(0)]), te('TE_INVALID_ARGUMENT'));
      assert.equal(e.getLocalSegmentDescriptor().buffers.length, 0, 'a failed batch left regions registered');
      const a = e.registerLocalMemory(Buffer.alloc(8192));
      assert.throws(() => e.unregisterLocalMemory(a + 16), te('TE_INVALID_ARGUMENT'));
      assert.throws(() => e.unregisterLocalMemory(12345), te('TE_INVALID_ARGUMENT'));
      assert.throws(() => e.localView(a + 8000, 500), te('TE_ADDRESS_NOT_REGISTERED'));
      assert.equal(e.getLocalSegmentDescriptor().buffers.length, 1);
    } finally {
      await e.close();
    }
  });

  it('calls before init: TE_NOT_INITIALIZED; after close: TE_CLOSED', async () => {
    const e = new TransferEngine();
    const req: TransferRequest = { opcode: TransferOpcode.READ, source: 1, targetId: 1, targetOffset: 0, length: 1 };
    const syncCalls: Array<[string, () => unknown]> = [
      ['segmentName', () => e.segmentName],
      ['rpcPort', () => e.rpcPort],
      ['dataPort', () => e.dataPort],
      ['registerLocalMemory', () => e.registerLocalMemory(Buffer.alloc(16))],
      ['registerLocalMemoryBatch', () => e.registerLocalMemoryBatch([Buffer.alloc(16)])],
      ['unregisterLocalMemory', () => e.unregisterLocalMemory(1)],
      ['localView', () => e.localView(1, 1)],
      ['getLocalSegmentDescriptor', () => e.getLocalSegmentDescriptor()],
      ['allocateBatchID', () => e.allocateBatchID(1)],
      ['submitTransfer', () => e.submitTransfer(1, [req])],
      ['getTransferStatus', () => e.getTransferStatus(1, 0)],
      ['freeBatchID', () => e.freeBatchID(1)],
      ['closeSegment', () => e.closeSegment(1)],
      ['getSegmentDescriptor', () => e.getSegmentDescriptor(1)],
      ['getNotifies', () => e.getNotifies()],
    ];
    const asyncCalls: Array<[string, () => Promise<unknown>]> = [
      ['openSegment', () => e.openSegment('127.0.0.1:1')],
      ['waitBatch', () => e.waitBatch(1)],
      ['installTransport', () => e.installTransport('tcp')],
      ['uninstallTransport', () => e.uninstallTransport('tcp')],
    ];
    const check = async (code: string): Promise<void> => {
      for (const [name, f] of syncCalls) assert.throws(f, te(code), name);
      for (const [name, f] of asyncCalls) await assert.rejects(f(), te(code), name);
    };
    await check('TE_NOT_INITIALIZED');
    await e.init('127.0.0.1');
    const rpc = e.rpcPort;
    const data = e.dataPort;
    await e.close();
    await check('TE_CLOSED');
    await e.close(); // idempotent
    await assert.rejects(e.init('127.0.0.1'), te('TE_CLOSED'));
    assert.equal(await canBind(rpc), true, 'close() left the RPC port bound');
    assert.equal(await canBind(data), true, 'close() left the data port bound');
  });

  it('close() with transfers in flight: they end FAILED (TE_CLOSED), close and waitBatch resolve, peer untouched outside the range', async () => {
    for (const when of ['at once', 'after progress'] as const) {
      const e = await newEngine();
      let waited: Promise<TransferStatus[]> | undefined;
      try {
        const local = patternBuffer(BIG, 4);
        const addr = e.registerLocalMemory(local);
        const seg = await e.openSegment(peer.segmentName);
        const bid = e.allocateBatchID(4);
        e.submitTransfer(bid, [
          { opcode: TransferOpcode.WRITE, source: addr, targetId: seg, targetOffset: remote + GUARD, length: BIG },
          { opcode: TransferOpcode.WRITE, source: addr, targetId: seg, targetOffset: remote + GUARD, length: BIG },
          { opcode: TransferOpcode.READ, source: addr, targetId: seg, targetOffset: remote + GUARD, length: BIG },
          { opcode: TransferOpcode.WRITE, source: addr, targetId: seg, targetOffset: remote + GUARD, length: BIG },
        ]);
        waited = e.waitBatch(bid);
        if (when === 'after progress') {
          await within(
            (async () => {
              while (![0, 1, 2, 3].some((i) => e.getTransferStatus(bid, i).transferred > 0)) await sleep(1);
            })(),
            10_000,
            'first progress',
          );
        }
        await within(e.close(), 5000, 'close()');
        const st = await within(waited, 5000, 'waitBatch after close()');
        assert.equal(st.length, 4);
        const failed = st.filter((s) => s.status === TaskStatus.FAILED);
        for (const s of st) assert.ok(s.status === TaskStatus.COMPLETED || s.status === TaskStatus.FAILED, `${when}: ${TaskStatus[s.status]}`);
        for (const s of failed) assert.equal(s.error?.code, 'TE_CLOSED', when);
        if (when === 'at once') assert.equal(failed.length, 4, 'close() right after submit must fail every task');
        else assert.ok(failed.length > 0, 'everything finished before close(): nothing was in flight');
      } finally {
        await e.close();
      }
      // Let the peer see the connections drop, then check it is intact and still serving.
      await sleep(50);
      const pattern = patternBuffer(BIG + 2 * GUARD, 8);
      assert.ok(remoteMem.subarray(0, GUARD).equals(pattern.subarray(0, GUARD)), `${when}: bytes before the range changed`);
      assert.ok(remoteMem.subarray(GUARD + BIG).equals(pattern.subarray(GUARD + BIG)), `${when}: bytes after the range changed`);
      const probe = await newEngine();
      try {
        const buf = Buffer.alloc(4096);
        const a = probe.registerLocalMemory(buf);
        const s2 = await probe.openSegment(peer.segmentName);
        const b2 = probe.allocateBatchID(1);
        probe.submitTransfer(b2, [{ opcode: TransferOpcode.READ, source: a, targetId: s2, targetOffset: remote, length: 4096 }]);
        const [ok] = await within(probe.waitBatch(b2), 5000, 'a transfer after close()');
        assert.equal(ok!.status, TaskStatus.COMPLETED);
        assert.ok(buf.equals(pattern.subarray(0, 4096)));
      } finally {
        await probe.close();
      }
      patternBuffer(BIG + 2 * GUARD, 8).copy(remoteMem);
    }
  });

  it('close() while openSegment waits for a silent peer: openSegment settles promptly (no dangling promise)', async () => {
    const socks = new Set<net.Socket>();
    const silent = net.createServer((sock) => {
      socks.add(sock);
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => silent.listen({ host: '127.0.0.1', port: 0 }, () => r()));
    const port = (silent.address() as net.AddressInfo).port;
    const e = await newEngine();
    try {
      const opening = e.openSegment(`127.0.0.1:${port}`);
      const outcome = opening.then(
        () => 'resolved',
        (err: unknown) => (err as { code?: string }).code ?? String(err),
      );
      await sleep(100);
      await within(e.close(), 5000, 'close()');
      const code = await within(outcome, 3000, 'openSegment after close()');
      assert.equal(code, 'TE_CLOSED');
    } finally {
      await e.close();
      for (const s of socks) s.destroy(); // unblocks the handshake if close() did not
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it('a peer whose data port went away (descriptor cached): FAILED TE_PEER_UNREACHABLE quickly', async () => {
    const target = await newEngine();
    const e = await newEngine();
    try {
      const r = target.registerLocalMemory(Buffer.alloc(4096));
      const a = e.registerLocalMemory(Buffer.alloc(4096));
      const seg = await e.openSegment(target.segmentName);
      await target.uninstallTransport('tcp');
      const bid = e.allocateBatchID(2);
      e.submitTransfer(bid, [
        { opcode: TransferOpcode.READ, source: a, targetId: seg, targetOffset: r, length: 4096 },
        { opcode: TransferOpcode.WRITE, source: a, targetId: seg, targetOffset: r, length: 4096 },
      ]);
      const st = await within(e.waitBatch(bid), 5000, 'transfers to a closed data port');
      for (const s of st) {
        assert.equal(s.status, TaskStatus.FAILED);
        assert.equal(s.error?.code, 'TE_PEER_UNREACHABLE');
      }
      e.closeSegment(seg);
      assert.throws(() => e.closeSegment(seg), te('TE_INVALID_SEGMENT'));
      assert.throws(
        () => e.submitTransfer(e.allocateBatchID(1), [{ opcode: TransferOpcode.READ, source: a, targetId: seg, targetOffset: r, length: 16 }]),
        te('TE_INVALID_SEGMENT'),
      );
    } finally {
      await e.close();
      await target.close();
    }
  });
});
