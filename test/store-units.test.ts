/**
 * The store client's own parts, each against bad input: the coro_rpc client
 * (src/store/rpc-client.ts) against a scripted coro_rpc server on loopback
 * (late, stray, oversized and refused replies, a server that hangs up, one
 * that never answers, one that is not there), the local buffer
 * (src/store/staging.ts), size strings (src/store/sizes.ts) and
 * ReplicateConfig's checks (src/store/replicate-config.ts).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { RpcClient, RpcError } from '../src/store/rpc-client.js';
import { RequestDecoder, encodeResponse, RpcErrc, type RequestFrame } from '../src/store/codec/coro-rpc.js';
import { decodeMessage, encodeMessage, string, struct, u16 } from '../src/store/codec/struct-pack.js';
import { Master, ReplicateConfig as ReplicateConfigCodec } from '../src/store/master-protocol.js';
import { StagingBuffer } from '../src/store/staging.js';
import { parseSize } from '../src/store/sizes.js';
import { ReplicateConfig } from '../src/store/replicate-config.js';
import { TransferEngineError, ErrorCode } from '../src/errors.js';

/** coro_rpc's error body for codes above 255 (as src/store/codec/coro-rpc.ts reads it). */
const extendedError = struct({ code: u16, message: string });

type Reply = (frame: RequestFrame, sock: net.Socket) => void;

/** A coro_rpc server on loopback that answers each request as `reply` says. */
async function scriptedServer(reply: Reply): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    connections++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    const decoder = new RequestDecoder({ maxFrame: 1 << 20 });
    sock.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) reply(f, sock);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** ExistKey's answer: true for the key "yes". */
function answerExist(f: RequestFrame, sock: net.Socket): void {
  const [key] = decodeMessage(Master.ExistKey.args, f.body);
  sock.write(encodeResponse(f.seq, RpcErrc.OK, encodeMessage(Master.ExistKey.result, { ok: true, value: key === 'yes' })));
}

function client(port: number, callTimeoutMs = 5000, maxFrame?: number): RpcClient {
  return new RpcClient({ host: '127.0.0.1', port, connectTimeoutMs: 5000, callTimeoutMs, ...(maxFrame === undefined ? {} : { maxFrame }) });
}

function code(c: string): (e: unknown) => boolean {
  return (e) => e instanceof TransferEngineError && e.code === c;
}

describe('RpcClient', () => {
  test('pipelines calls on one connection; each reply finds its call, in any order', async () => {
    const held: Array<[RequestFrame, net.Socket]> = [];
    const srv = await scriptedServer((f, sock) => {
      held.push([f, sock]);
      if (held.length === 3) for (const [hf, hs] of held.reverse()) answerExist(hf, hs); // answer last first
    });
    const rpc = client(srv.port);
    try {
      const r = await Promise.all([rpc.call(Master.ExistKey, ['yes', 't']), rpc.call(Master.ExistKey, ['no', 't']), rpc.call(Master.ExistKey, ['yes', 't'])]);
      assert.deepEqual(r, [{ ok: true, value: true }, { ok: true, value: false }, { ok: true, value: true }]);
      assert.equal(srv.connections(), 1);
      assert.equal(rpc.inFlight, 0);
    } finally {
      rpc.close();
      await srv.close();
    }
  });

  test('an RPC-layer error reply is an RpcError with the server code and message; the connection stays usable', async () => {
    let n = 0;
    const srv = await scriptedServer((f, sock) => {
      n++;
      if (n === 1) sock.write(encodeResponse(f.seq, RpcErrc.FUNCTION_NOT_REGISTERED, encodeMessage(string, 'function not registered')));
      else if (n === 2) sock.write(encodeResponse(f.seq, RpcErrc.EXTENDED, encodeMessage(extendedError, { code: 1000, message: 'custom' })));
      else answerExist(f, sock);
    });
    const rpc = client(srv.port);
    try {
      await assert.rejects(
        rpc.call(Master.ExistKey, ['k', 't']),
        (e: unknown) => e instanceof RpcError && e.code === ErrorCode.PROTOCOL_ERROR && e.rpcCode === RpcErrc.FUNCTION_NOT_REGISTERED && /function not registered/.test(e.message),
      );
      await assert.rejects(rpc.call(Master.ExistKey, ['k', 't']), (e: unknown) => e instanceof RpcError && e.rpcCode === 1000 && /custom/.test(e.message));
      assert.deepEqual(await rpc.call(Master.ExistKey, ['yes', 't']), { ok: true, value: true });
      assert.equal(srv.connections(), 1);
    } finally {
      rpc.close();
      await srv.close();
    }
  });

  test('a reply no call waits for fails the calls on that connection, and the next call reconnects', async () => {
    let n = 0;
    const srv = await scriptedServer((f, sock) => {
      if (n++ === 0) sock.write(encodeResponse(f.seq + 1000, RpcErrc.OK, encodeMessage(Master.ExistKey.result, { ok: true, value: true })));
      else answerExist(f, sock);
    });
    const rpc = client(srv.port);
    try {
      await assert.rejects(rpc.call(Master.ExistKey, ['yes', 't']), (e: unknown) => code(ErrorCode.PROTOCOL_ERROR)(e) && /sequence number/.test((e as Error).message));
      assert.deepEqual(await rpc.call(Master.ExistKey, ['yes', 't']), { ok: true, value: true });
      assert.equal(srv.connections(), 2);
    } finally {
      rpc.close();
      await srv.close();
    }
  });

  test('a reply whose body does not decode as the method result is a typed error', async () => {
    const srv = await scriptedServer((f, sock) => sock.write(encodeResponse(f.seq, RpcErrc.OK, Buffer.from([1, 2, 3]))));
    const rpc = client(srv.port);
    try {
      await assert.rejects(rpc.call(Master.ExistKey, ['k', 't']), (e: unknown) => e instanceof TransferEngineError);
    } finally {
      rpc.close();
      await srv.close();
    }
  });

  test('a reply larger than maxFrame fails before it is buffered', async () => {
    const srv = await scriptedServer((f, sock) => sock.write(encodeResponse(f.seq, RpcErrc.OK, Buffer.alloc(4096))));
    const rpc = client(srv.port, 5000, 1024);
    try {
      await assert.rejects(rpc.call(Master.ExistKey, ['k', 't']), code(ErrorCode.FRAME_TOO_LARGE));
      assert.equal(rpc.inFlight, 0);
    } finally {
      rpc.close();
      await srv.close();
    }
  });

  test('a server that hangs up fails every waiting call at once; the next call reconnects', async () => {
    let hangUp = true;
    const srv = await scriptedServer((f, sock) => {
      if (hangUp) {
        if (f.seq === 1) sock.destroy(); // both calls are waiting by now
        return;
      }
      answerExist(f, sock);
    });
    const rpc = client(srv.port, 60_000);
    try {
      const calls = [rpc.call(Master.ExistKey, ['a', 't']), rpc.call(Master.ExistKey, ['b', 't'])];
      for (const c of calls) await assert.rejects(c, code(ErrorCode.PEER_UNREACHABLE));
      assert.equal(rpc.inFlight, 0);
      hangUp = false;
      assert.deepEqual(await rpc.call(Master.ExistKey, ['yes', 't']), { ok: true, value: true });
      assert.equal(srv.connections(), 2);
    } finally {
      rpc.close();
      await srv.close();
    }
  });

  test('a call with no reply times out with TE_TIMEOUT and its connection is dropped', async () => {
    let answer = false;
    const srv = await scriptedServer((f, sock) => {
      if (answer) answerExist(f, sock);
    });
    const rpc = client(srv.port, 200);
    try {
      await assert.rejects(rpc.call(Master.ExistKey, ['k', 't']), code(ErrorCode.TIMEOUT));
      answer = true;
      assert.deepEqual(await rpc.call(Master.ExistKey, ['yes', 't']), { ok: true, value: true });
      assert.equal(srv.connections(), 2, 'the timed-out connection is not reused');
    } finally {
      rpc.close();
      await srv.close();
    }
  });

  test('no server: TE_PEER_UNREACHABLE, and no call left waiting', async () => {
    const srv = await scriptedServer(() => {});
    const port = srv.port;
    await srv.close();
    const rpc = client(port);
    await assert.rejects(rpc.call(Master.ExistKey, ['k', 't']), code(ErrorCode.PEER_UNREACHABLE));
    assert.equal(rpc.inFlight, 0);
    rpc.close();
  });

  test('close() fails waiting calls with TE_CLOSED, and later calls too', async () => {
    const srv = await scriptedServer(() => {});
    const rpc = client(srv.port, 60_000);
    try {
      const waiting = rpc.call(Master.ExistKey, ['k', 't']);
      while (rpc.inFlight === 0) await new Promise((r) => setTimeout(r, 5));
      rpc.close();
      await assert.rejects(waiting, code(ErrorCode.CLOSED));
      await assert.rejects(rpc.call(Master.ExistKey, ['k', 't']), code(ErrorCode.CLOSED));
    } finally {
      await srv.close();
    }
  });
});

describe('StagingBuffer', () => {
  test('first fit, 64-byte blocks, and freed neighbours merge back into one range', async () => {
    const s = new StagingBuffer(1024);
    const a = await s.acquire(1); // 64
    const b = await s.acquire(100); // 128
    const c = await s.acquire(64);
    assert.deepEqual([a, b, c], [0, 64, 192]);
    assert.equal(s.available, 1024 - 256);
    s.release(b, 100);
    assert.equal(await s.acquire(128), 64, 'the freed hole is reused first');
    s.release(64, 128);
    s.release(a, 1);
    s.release(c, 64);
    assert.equal(s.available, 1024);
    assert.equal(await s.acquire(1024), 0, 'all ranges merged: the whole buffer is one block again');
  });

  test('a request that does not fit waits, first come first served; one larger than the buffer is refused', async () => {
    const s = new StagingBuffer(256);
    const first = await s.acquire(256);
    await assert.rejects(s.acquire(257), code(ErrorCode.INVALID_ARGUMENT));
    const order: string[] = [];
    const big = s.acquire(192).then((at) => (order.push('big'), at));
    const small = s.acquire(64).then((at) => (order.push('small'), at));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, [], 'both wait while the buffer is full');
    s.release(first, 256);
    assert.deepEqual([await big, await small], [0, 192]);
    assert.deepEqual(order, ['big', 'small']);
  });

  test('close() fails waiting requests with TE_CLOSED, and later ones too', async () => {
    const s = new StagingBuffer(128);
    await s.acquire(128);
    const waiting = s.acquire(64);
    s.close();
    await assert.rejects(waiting, code(ErrorCode.CLOSED));
    await assert.rejects(s.acquire(64), code(ErrorCode.CLOSED));
  });

  test('a store without a local buffer refuses every request', async () => {
    await assert.rejects(new StagingBuffer(0).acquire(1), code(ErrorCode.INVALID_ARGUMENT));
  });
});

describe('parseSize', () => {
  test('numbers, bigints and Mooncake size strings', () => {
    const cases: Array<[unknown, number]> = [
      [0, 0],
      [4096, 4096],
      [4096n, 4096],
      ['4096', 4096],
      ['100b', 100],
      ['16 m', 16 * 1024 ** 2],
      ['512MB', 512 * 1024 ** 2],
      ['1gb', 1024 ** 3],
      ['1.5G', 1.5 * 1024 ** 3],
      [' 2k ', 2048],
      ['.5k', 512],
    ];
    for (const [v, want] of cases) assert.equal(parseSize(v, 'x'), want, String(v));
  });

  test('anything else is TE_INVALID_ARGUMENT naming the setting', () => {
    for (const v of [-1, 1.5, Number.NaN, 2 ** 53, -1n, 2n ** 60n, '', '  ', 'abc', '12 parsecs', '1e9', '-5', 'mb', '1..2k', '9007199254740993', '99999999tb', null, undefined, {}, [1]]) {
      assert.throws(
        () => parseSize(v, 'localBufferSize'),
        (e: unknown) => code(ErrorCode.INVALID_ARGUMENT)(e) && /^localBufferSize: /.test((e as Error).message),
        String(v),
      );
    }
  });
});

describe('ReplicateConfig.toWire', () => {
  test('defaults and camelCase fields become the master struct', () => {
    const w = new ReplicateConfig({ replicaNum: 2, preferredSegments: ['h:1'], withHardPin: true, softPinTtlMs: 5000 }).toWire('host');
    assert.equal(w.replicaNum, 2n);
    assert.deepEqual(w.preferredSegments, ['h:1']);
    assert.equal(w.withHardPin, true);
    assert.equal(w.softPinTtlMs, 5000n);
    assert.equal(w.hostId, 'host');
    assert.equal(w.groupIds, null);
  });

  test('bad counts, lists and enums are TE_INVALID_ARGUMENT naming the field, before anything is sent', () => {
    const bad: Array<[Partial<ReplicateConfig>, RegExp]> = [
      [{ replicaNum: 0 }, /replicaNum/],
      [{ replicaNum: -1 }, /replicaNum/],
      [{ replicaNum: 1.5 }, /replicaNum/],
      [{ nofReplicaNum: Number.NaN }, /nofReplicaNum/],
      [{ softPinTtlMs: -5 }, /softPinTtlMs/],
      [{ preferredSegments: 'h:1' as unknown as string[] }, /preferredSegments/],
      [{ preferredSegments: [1 as unknown as string] }, /preferredSegments/],
      [{ groupIds: [null as unknown as string] }, /groupIds/],
      [{ softPinAction: 9 as unknown as 0 }, /softPinAction/],
      [{ dataType: 'x' as unknown as number }, /x is not a uint8/],
    ];
    for (const [init, re] of bad) {
      assert.throws(() => encodeMessage(ReplicateConfigCodec, new ReplicateConfig(init).toWire()), (e: unknown) => code(ErrorCode.INVALID_ARGUMENT)(e) && re.test((e as Error).message), JSON.stringify(init));
    }
  });
});

describe('masterLocator: where the master is', () => {
  test('host:port is used as given; etcd:// follows a leader; anything else is refused up front', async () => {
    const { masterLocator } = await import('../src/store/master-view.js');
    const direct = masterLocator('127.0.0.1:50051');
    assert.equal(direct.follows, false);
    assert.deepEqual(await direct.resolve(), { host: '127.0.0.1', port: 50051 });
    assert.equal(masterLocator('etcd://127.0.0.1:2379;127.0.0.1:2380').follows, true);
    for (const bad of ['127.0.0.1', 'etcd://', 'etcd://;,', '']) {
      assert.throws(() => masterLocator(bad), { code: 'TE_INVALID_ARGUMENT' }, bad);
    }
  });

  test('an etcd nobody answers on: the lookup fails with TE_PEER_UNREACHABLE, it does not hang', async () => {
    const { masterLocator } = await import('../src/store/master-view.js');
    const { freePort } = await import('./servers.js');
    const l = masterLocator(`etcd://127.0.0.1:${await freePort()}`);
    try {
      await assert.rejects(l.resolve(), { code: 'TE_PEER_UNREACHABLE' });
    } finally {
      l.close();
    }
  });
});
