/**
 * HTTP metadata: the bundled server's Mooncake semantics and its persistence
 * across a crash, the client against misbehaving servers (500, slow, cut
 * short, down), and two engines in separate processes finding each other
 * through a real server process, including a peer restarted on new ports,
 * a live namesake, and the server going down mid-run.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { TransferEngine, TransferOpcode, TaskStatus, type TransferRequest } from '../src/core.js';
import { MetadataHttpServer } from '../src/metadata/http-server.js';
import { HttpMetadataStore, curlEscape } from '../src/metadata/http.js';
import { encodeDescriptorValue } from '../src/metadata/values.js';
import { spawnPeer, sha256, type PeerProcess } from './helpers.js';
import { patternBuffer } from './pattern.js';
import { MetadataServerProcess, freePort, tempDir } from './servers.js';

const te = (code: string) => (e: unknown): boolean => (e as { code?: string }).code === code;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** One address base for a peer and its restart, so the restart registers at the same addresses. */
const FIXED_BASE = { TE_ADDRESS_BASE: '0x200000000000' };

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`${what} took more than ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

async function req(base: string, method: string, key: string | null, body?: string): Promise<{ status: number; text: string }> {
  const url = key === null ? base : `${base}?key=${curlEscape(key)}`;
  const r = await fetch(url, { method, ...(body !== undefined ? { body } : {}), signal: AbortSignal.timeout(5000) });
  return { status: r.status, text: await r.text() };
}

/** A throwaway HTTP server whose handler the test writes. */
async function fakeHttp(handler: http.RequestListener): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen({ host: '127.0.0.1', port: 0 }, () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/metadata`,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

describe('bundled HTTP metadata server: Mooncake semantics', () => {
  let server: MetadataHttpServer;
  let base: string;
  before(async () => {
    server = await MetadataHttpServer.start({ host: '127.0.0.1', port: 0 });
    base = server.url;
  });
  after(() => server.close());

  it('GET /health answers 200 OK', async () => {
    const r = await fetch(`http://127.0.0.1:${server.port}/health`);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'OK');
  });

  it('PUT stores the exact bytes; GET returns them; 404 when missing; DELETE 200 then 404', async () => {
    const key = 'mooncake/ram/node:1/ü';
    assert.equal((await req(base, 'GET', key)).status, 404);
    const value = '{"a":1}\n';
    assert.deepEqual(await req(base, 'PUT', key, value), { status: 200, text: 'metadata updated' });
    assert.deepEqual(await req(base, 'GET', key), { status: 200, text: value });
    assert.equal((await req(base, 'PUT', key, '{"a":2}')).status, 200, 'a non-rpc_meta key may be overwritten');
    assert.equal((await req(base, 'GET', key)).text, '{"a":2}');
    assert.equal((await req(base, 'DELETE', key)).status, 200);
    assert.equal((await req(base, 'DELETE', key)).status, 404);
    assert.equal((await req(base, 'GET', key)).status, 404);
  });

  it('an empty or blank key is 400; other paths 404; other methods 405', async () => {
    for (const method of ['GET', 'PUT', 'DELETE']) {
      assert.equal((await req(base, method, '', method === 'PUT' ? '{}' : undefined)).status, 400, method);
      assert.equal((await req(base, method, '  ', method === 'PUT' ? '{}' : undefined)).status, 400, method);
      assert.equal((await req(base, method, null, method === 'PUT' ? '{}' : undefined)).status, 400, `${method} without key`);
    }
    assert.equal((await req(`http://127.0.0.1:${server.port}/other`, 'GET', 'k')).status, 404);
    assert.equal((await req(base, 'POST', 'k', '{}')).status, 405);
  });

  it('re-PUT of an existing rpc_meta key: identical body 200, a different one 400', async () => {
    const key = 'mooncake/rpc_meta/node1';
    const v = '{"ip_or_host_name":"127.0.0.1","rpc_port":15001}';
    assert.equal((await req(base, 'PUT', key, v)).status, 200);
    assert.deepEqual(await req(base, 'PUT', key, v), { status: 200, text: 'metadata unchanged' });
    const dup = await req(base, 'PUT', key, v.replace('15001', '15002'));
    assert.equal(dup.status, 400);
    assert.match(dup.text, /Duplicate rpc_meta/);
    assert.equal((await req(base, 'GET', key)).text, v);
    assert.equal((await req(base, 'DELETE', key)).status, 200);
    assert.equal((await req(base, 'PUT', key, v.replace('15001', '15002'))).status, 200, 'free again once deleted');
  });

  it('a PUT whose body is cut short stores nothing (never half a value)', async () => {
    const key = 'mooncake/ram/half';
    assert.equal((await req(base, 'PUT', key, '{"old":true}')).status, 200);
    const sock = net.connect({ host: '127.0.0.1', port: server.port });
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write(`PUT /metadata?key=${curlEscape(key)} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"new":`);
    await sleep(100);
    sock.destroy();
    await sleep(100);
    assert.equal((await req(base, 'GET', key)).text, '{"old":true}');
  });

  it('refuses bodies over 32 MiB with 413', async () => {
    const r = await req(base, 'PUT', 'mooncake/ram/huge', 'x'.repeat(32 * 1024 * 1024 + 1));
    assert.equal(r.status, 413);
    assert.equal((await req(base, 'GET', 'mooncake/ram/huge')).status, 404);
  });
});

describe('bundled HTTP metadata server: --data-dir persistence', () => {
  it('survives SIGKILL and restart with every acknowledged change, and cleans interrupted writes', async () => {
    const dir = tempDir('te-meta-');
    const s = await MetadataServerProcess.start({ dataDir: dir });
    try {
      const keys = ['mooncake/ram/a', 'mooncake/prod/nvmeof/disk 0', 'mooncake/rpc_meta/a', 'k:ü'];
      for (const [i, k] of keys.entries()) assert.equal((await req(s.url, 'PUT', k, `{"v":${i}}\n`)).status, 200);
      assert.equal((await req(s.url, 'PUT', keys[0]!, '{"v":"new"}')).status, 200);
      assert.equal((await req(s.url, 'DELETE', keys[3]!)).status, 200);
      // A write that crashed between its temporary file and the rename.
      writeFileSync(path.join(dir, `${'0'.repeat(64)}.json.tmp-1-1`), '{"key":"mooncake/ram/torn","val');
      await s.kill();
      await s.restart();
      assert.deepEqual(await req(s.url, 'GET', keys[0]!), { status: 200, text: '{"v":"new"}' });
      assert.equal((await req(s.url, 'GET', keys[1]!)).text, '{"v":1}\n');
      assert.equal((await req(s.url, 'GET', keys[2]!)).text, '{"v":2}\n');
      assert.equal((await req(s.url, 'GET', keys[3]!)).status, 404, 'a deletion is durable too');
      assert.equal((await req(s.url, 'GET', 'mooncake/ram/torn')).status, 404);
      assert.ok(!readdirSync(dir).some((f) => f.includes('.tmp-')), 'interrupted writes are removed');
      // The duplicate rpc_meta rule holds across the restart.
      assert.equal((await req(s.url, 'PUT', keys[2]!, '{"v":9}')).status, 400);
    } finally {
      await s.stop();
    }
  });

  it('the CLI refuses bad flags with a usage error', async () => {
    const { spawnSync } = await import('node:child_process');
    const main = new URL('../src/cli/main.js', import.meta.url).pathname;
    for (const args of [['--port', 'x'], ['--port', '70000'], ['--bogus'], ['extra']]) {
      const r = spawnSync(process.execPath, [main, 'metadata-server', ...args], { encoding: 'utf8', timeout: 10_000 });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /transfer-engine metadata-server: /);
    }
  });
});

describe('HTTP metadata client against bad servers', () => {
  it('HTTP 500 is TE_METADATA_UNAVAILABLE, 4xx TE_METADATA_REJECTED, with the status in the message', async () => {
    for (const [status, code] of [[500, 'TE_METADATA_UNAVAILABLE'], [503, 'TE_METADATA_UNAVAILABLE'], [403, 'TE_METADATA_REJECTED'], [302, 'TE_METADATA_UNAVAILABLE']] as const) {
      const f = await fakeHttp((_, res) => res.writeHead(status).end('nope'));
      const store = new HttpMetadataStore(f.url, { timeoutMs: 2000 });
      try {
        for (const op of [() => store.get('k'), () => store.put('k', '{}'), () => store.delete('k')]) {
          await assert.rejects(op(), (e: Error & { code?: string }) => e.code === code && e.message.includes(`HTTP ${status}`));
        }
      } finally {
        await store.close();
        await f.close();
      }
    }
  });

  it('a server that never answers: TE_TIMEOUT at the bound, never a hang', async () => {
    const f = await fakeHttp(() => {
      /* never answers */
    });
    const store = new HttpMetadataStore(f.url, { timeoutMs: 400 });
    try {
      const t0 = Date.now();
      await assert.rejects(store.get('k'), te('TE_TIMEOUT'));
      await assert.rejects(store.put('k', '{}'), te('TE_TIMEOUT'));
      assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
    } finally {
      await store.close();
      await f.close();
    }
  });

  it('an answer cut short is never returned as a value', async () => {
    const f = await fakeHttp((_, res) => {
      res.writeHead(200, { 'Content-Length': '100' });
      res.write('{"name":"half', () => res.destroy());
    });
    const store = new HttpMetadataStore(f.url, { timeoutMs: 2000 });
    try {
      await assert.rejects(store.get('k'), te('TE_METADATA_UNAVAILABLE'));
    } finally {
      await store.close();
      await f.close();
    }
  });

  it('a server that is down: TE_METADATA_UNAVAILABLE at once, for the store and for engine.init', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/metadata`;
    const store = new HttpMetadataStore(url, {});
    const t0 = Date.now();
    await assert.rejects(store.get('k'), (e: Error & { code?: string }) => e.code === 'TE_METADATA_UNAVAILABLE' && /ECONNREFUSED/.test(e.message));
    await store.close();
    const e = new TransferEngine({ metadataServer: url });
    await assert.rejects(e.init('seg-down', '127.0.0.1'), te('TE_METADATA_UNAVAILABLE'));
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
    // Nothing was left bound: the same engine can init once a server is there.
    const s = await MetadataHttpServer.start({ host: '127.0.0.1', port });
    try {
      await e.init('seg-down', '127.0.0.1');
      assert.equal(e.segmentName, 'seg-down');
      await e.close();
      assert.equal(s.size, 0, 'close() deleted both keys');
    } finally {
      await s.close();
    }
  });

  it('engine.init against a slow or failing server fails within the bound with a typed error', async () => {
    for (const [label, handler, code] of [
      ['slow', () => {}, 'TE_TIMEOUT'],
      ['500', (_: http.IncomingMessage, res: http.ServerResponse) => res.writeHead(500).end(), 'TE_METADATA_UNAVAILABLE'],
    ] as const) {
      const f = await fakeHttp(handler);
      try {
        const e = new TransferEngine({ metadataServer: f.url, env: { TE_METADATA_TIMEOUT_MS: '300' } });
        const t0 = Date.now();
        await within(assert.rejects(e.init('seg', '127.0.0.1'), te(code)), 3000, `init against a ${label} server`);
        assert.ok(Date.now() - t0 < 2500, `${label}: took ${Date.now() - t0} ms`);
      } finally {
        await f.close();
      }
    }
  });
});

describe('two engines in separate processes through the HTTP metadata server', () => {
  const SIZE = 4 * 1024 * 1024;
  let meta: MetadataServerProcess;
  let engine: TransferEngine;
  let local: Buffer;
  let localAddr: number;
  const peers: PeerProcess[] = [];

  const spawnNamed = async (name: string, env: Record<string, string> = {}): Promise<PeerProcess> => {
    const p = await spawnPeer({}, { host: name, connectable: '127.0.0.1', metadataServer: meta.url, env });
    peers.push(p);
    return p;
  };

  async function run(reqs: TransferRequest[]): Promise<Array<{ status: TaskStatus; code: string | undefined }>> {
    const bid = engine.allocateBatchID(reqs.length);
    engine.submitTransfer(bid, reqs);
    const st = await within(engine.waitBatch(bid), 20_000, 'batch');
    engine.freeBatchID(bid);
    return st.map((s) => ({ status: s.status, code: s.error?.code }));
  }

  before(async () => {
    meta = await MetadataServerProcess.start({ dataDir: tempDir('te-meta-') });
    engine = new TransferEngine({ metadataServer: meta.url, env: { ...process.env, TE_METADATA_TIMEOUT_MS: '1000' } });
    await engine.init('initiator', '127.0.0.1');
    local = Buffer.alloc(SIZE);
    localAddr = engine.registerLocalMemory(local);
    await engine.flushMetadata();
  });

  after(async () => {
    await engine?.close();
    for (const p of peers) await p.stop();
    await meta?.stop();
  });

  it('publishes Mooncake-shaped values, opens by name, and moves data both ways', async () => {
    const peer = await spawnNamed('target-1');
    const remote = await peer.register(SIZE, 7);
    // The stored values, byte for byte: compact, sorted, no newline over HTTP. engine_id and machine_id are ours (identity, same-host
    // shared memory); Mooncake's decoder ignores fields it does not know.
    const rpc = await req(meta.url, 'GET', 'mooncake/rpc_meta/target-1');
    assert.equal(rpc.text, `{"ip_or_host_name":"127.0.0.1","rpc_port":${peer.rpcPort}}`);
    const stored = (await req(meta.url, 'GET', 'mooncake/ram/target-1')).text;
    assert.match(stored, new RegExp(`^\\{"buffers":\\[\\{"addr":${remote},"length":${SIZE},"name":"target-1"\\}\\],"engine_id":\\d+,"machine_id":"[^"]+","name":"target-1","protocol":"tcp","tcp_data_port":${peer.dataPort},"tcp_proto_version":2,"timestamp":"[^"]+"\\}$`));
    const seg = await engine.openSegment('target-1');
    assert.equal(engine.getSegmentDescriptor(seg).buffers[0]!.addr, BigInt(remote));
    const st = await run([{ opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: remote, length: SIZE }]);
    assert.deepEqual(st, [{ status: TaskStatus.COMPLETED, code: undefined }]);
    assert.equal(sha256(local), sha256(patternBuffer(SIZE, 7)));
    local.fill(9);
    assert.equal((await run([{ opcode: TransferOpcode.WRITE, source: localAddr, targetId: seg, targetOffset: remote, length: SIZE }]))[0]!.status, TaskStatus.COMPLETED);
    assert.equal(await peer.hash(remote, SIZE), sha256(Buffer.alloc(SIZE, 9)));
    // The peer opens us by name too.
    local.fill(0, 0, 4096);
    const r = await peer.call<{ statuses: Array<{ status: number }> }>('transfer', {
      segment: 'initiator',
      requests: [{ op: 'write', source: remote, target: String(localAddr), length: 4096 }],
    });
    assert.deepEqual(r.statuses.map((s) => s.status), [TaskStatus.COMPLETED]);
    assert.equal(sha256(local.subarray(0, 4096)), sha256(Buffer.alloc(4096, 9)), 'the peer wrote its (overwritten) region back');
    // Every registration change re-publishes the descriptor.
    await peer.register(8192);
    assert.equal(JSON.parse((await req(meta.url, 'GET', 'mooncake/ram/target-1')).text).buffers.length, 2);
    // A clean stop deletes both keys.
    await peer.stop();
    assert.equal((await req(meta.url, 'GET', 'mooncake/ram/target-1')).status, 404);
    assert.equal((await req(meta.url, 'GET', 'mooncake/rpc_meta/target-1')).status, 404);
  });

  it('bad entries: missing, garbage, unknown protocol, non-TCP, no rpc_meta — each a typed error', async () => {
    await assert.rejects(engine.openSegment('nobody'), te('TE_INVALID_SEGMENT'));
    const rpc = '{"ip_or_host_name":"127.0.0.1","rpc_port":1}';
    const good = encodeDescriptorValue({ name: 'x', protocol: 'tcp', tcpDataPort: 1, tcpProtoVersion: 2, buffers: [{ name: 'x', addr: 4096n, length: 4096n }] }, false);
    const cases: Array<[string, string, string | null, string]> = [
      ['garbage', 'this is not json', rpc, 'TE_MALFORMED'],
      ['half', good.slice(0, 40), rpc, 'TE_MALFORMED'],
      ['unknown-proto', good.replace('"tcp"', '"smoke-signals"'), rpc, 'TE_MALFORMED'],
      ['rdma-only', good.replace('"tcp"', '"rdma"'), rpc, 'TE_NO_TRANSPORT'],
      ['no-rpc-meta', good, null, 'TE_INVALID_SEGMENT'],
      ['bad-rpc-meta', good, '{"ip_or_host_name":"h"}', 'TE_MALFORMED'],
    ];
    for (const [name, value, meta_, code] of cases) {
      const desc = value.replaceAll('"x"', JSON.stringify(name));
      assert.equal((await req(meta.url, 'PUT', `mooncake/ram/${name}`, desc)).status, 200);
      if (meta_) assert.equal((await req(meta.url, 'PUT', `mooncake/rpc_meta/${name}`, meta_)).status, 200);
      await assert.rejects(engine.openSegment(name), (e: Error & { code?: string }) => e.code === code && e.message.length > 0, name);
    }
  });

  it('a live namesake is refused; a crashed one is replaced, and transfers find the restarted peer', async () => {
    // A fixed address base (TE_ADDRESS_BASE): the restarted peer registers the same memory at the same address.
    const first = await spawnNamed('target-2', FIXED_BASE);
    const remote = await first.register(SIZE, 11);
    const seg = await engine.openSegment('target-2');
    assert.equal((await run([{ opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: remote, length: SIZE }]))[0]!.status, TaskStatus.COMPLETED);
    // Same name while the first one runs: refused, and the first one's entry is untouched.
    await assert.rejects(spawnNamed('target-2', FIXED_BASE), (e: Error & { code?: string }) => e.code === 'TE_METADATA_REJECTED' && /in use/.test(e.message));
    assert.equal((await req(meta.url, 'GET', 'mooncake/rpc_meta/target-2')).text, `{"ip_or_host_name":"127.0.0.1","rpc_port":${first.rpcPort}}`);
    // Crash: the keys stay behind (the server refuses to overwrite rpc_meta), the restart takes them over.
    first.kill();
    await sleep(200);
    const second = await spawnNamed('target-2', FIXED_BASE);
    assert.notEqual(second.dataPort, first.dataPort);
    const remote2 = await second.register(SIZE, 12);
    assert.equal(remote2, remote, 'same registration order, same synthetic address');
    // The initiator still holds the old descriptor: the first attempt fails, the refetch finds the new ports.
    const st = await run([{ opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: remote, length: SIZE }]);
    assert.deepEqual(st, [{ status: TaskStatus.COMPLETED, code: undefined }]);
    assert.equal(sha256(local), sha256(patternBuffer(SIZE, 12)));
    assert.equal(engine.getSegmentDescriptor(seg).tcpDataPort, second.dataPort);
  });

  it('the server going down mid-run: open segments keep working, lookups fail fast, publishing resumes when it is back', async () => {
    const peer = await spawnNamed('target-3');
    const remote = await peer.register(SIZE, 21);
    const seg = await engine.openSegment('target-3');
    await meta.kill();
    // Transfers to an open segment do not need the metadata server.
    assert.equal((await run([{ opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: remote, length: SIZE }]))[0]!.status, TaskStatus.COMPLETED);
    const t0 = Date.now();
    await assert.rejects(engine.openSegment('target-unknown'), te('TE_METADATA_UNAVAILABLE'));
    assert.ok(Date.now() - t0 < 2000);
    // A registration while it is down: the publish fails (typed), and is retried in the background.
    const extra = Buffer.alloc(4096);
    engine.registerLocalMemory(extra);
    await assert.rejects(engine.flushMetadata(), te('TE_METADATA_UNAVAILABLE'));
    await meta.restart(); // same port, same data dir
    const deadline = Date.now() + 10_000;
    for (;;) {
      const d = await req(meta.url, 'GET', 'mooncake/ram/initiator');
      if (d.status === 200 && JSON.parse(d.text).buffers.length === 2) break;
      assert.ok(Date.now() < deadline, 'the background re-publish did not land');
      await sleep(100);
    }
    await engine.flushMetadata();
    // Lookups work again, with what the server persisted before it died.
    const again = await peer.call<{ statuses: Array<{ status: number }> }>('transfer', {
      segment: 'initiator',
      requests: [{ op: 'read', source: remote, target: String(localAddr), length: 4096 }],
    });
    assert.deepEqual(again.statuses.map((s) => s.status), [TaskStatus.COMPLETED]);
  });

  it('close() with the server down still ends promptly', async () => {
    const e = new TransferEngine({ metadataServer: meta.url, env: { ...process.env, TE_METADATA_TIMEOUT_MS: '500' } });
    await e.init('short-lived', '127.0.0.1');
    await meta.kill();
    try {
      await within(e.close(), 3000, 'close() with the metadata server down');
    } finally {
      await meta.restart();
    }
  });
});

describe('bench with --metadata_type/--metadata_servers', () => {
  const main = new URL('../src/cli/main.js', import.meta.url).pathname;
  const bench = async (args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> => {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [main, 'bench', ...args], { env: { ...process.env, MC_TCP_BIND_ADDRESS: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const status = await within(new Promise<number | null>((r) => child.once('exit', (c) => r(c))), 60_000, `bench ${args.join(' ')}`);
    return { status, stdout, stderr };
  };

  it('--loopback through the HTTP metadata server: the target publishes, the initiator opens it by name', async () => {
    const meta = await MetadataServerProcess.start();
    try {
      const servers = meta.url.replace('http://', '');
      const r = await bench(['--loopback', '--metadata_type=http', `--metadata_servers=${servers}`, '--duration=0.5', '--size=64K', '--batch=4', '--json']);
      assert.equal(r.status, 0, r.stderr);
      const last = JSON.parse(r.stdout.trim().split('\n').pop()!) as { failures: number; integrity: string; remote_segment: string; bytes: number };
      assert.equal(last.failures, 0);
      assert.equal(last.integrity, 'passed');
      assert.match(last.remote_segment, /^bench-target-\d+$/, 'opened by name, not host:port');
      assert.ok(last.bytes > 0);
      assert.equal((await req(meta.url, 'GET', `mooncake/ram/${last.remote_segment}`)).status, 404, 'the target unpublished on exit');
    } finally {
      await meta.stop();
    }
  });

  it('refuses inconsistent metadata flags with a usage error', async () => {
    for (const args of [['--metadata_type=etcd'], ['--metadata_servers=h:1'], ['--metadata_type=zk', '--metadata_servers=h:1'], ['--metadata_type=redis', '--metadata_servers=h:port']]) {
      const r = await bench(['--mode=target', ...args]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^transfer-engine bench: .*metadata/m);
    }
  });
});
