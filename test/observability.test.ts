/**
 * Observability (issue 20): the engine's metrics port (/metrics in the
 * Prometheus text format, checked by the Prometheus project's own Python
 * parser; /health), the metadata server's /metrics, and the
 * diagnostics_channel events, with real engines moving real bytes. Bad
 * input: a port in use, garbage requests, a client that stalls, scrapes
 * during shutdown.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { TransferEngine, TransferOpcode, TaskStatus, type TransferRequest } from '../src/core.js';
import { MetadataHttpServer } from '../src/metadata/http-server.js';
import { ensureInteropEnv, PYTHON } from './interop/mooncake.js';
import { freePort, httpGet } from './servers.js';

const KiB = 1024;

const get = httpGet;

/** The samples of a scrape: `name{labels}` -> value (labels as printed). */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** The Prometheus project's parser (prometheus_client, pinned by test/interop/setup.sh): family name -> [type, samples]. */
function parseWithPrometheus(text: string): Record<string, [string, number]> {
  const script =
    'import sys, json\nfrom prometheus_client.parser import text_string_to_metric_families\n' +
    'out = {f.name: [f.type, len(f.samples)] for f in text_string_to_metric_families(sys.stdin.read())}\nprint(json.dumps(out))';
  const r = spawnSync(PYTHON, ['-c', script], { input: text, encoding: 'utf8' });
  assert.equal(r.status, 0, `prometheus_client refused the text: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, [string, number]>;
}

async function engineWithMetrics(env: Record<string, string> = {}): Promise<{ e: TransferEngine; port: number }> {
  const port = await freePort();
  const e = new TransferEngine({ env: { ...process.env, ...env }, metricsPort: port });
  await e.init('127.0.0.1');
  return { e, port };
}

async function run(e: TransferEngine, requests: TransferRequest[]): Promise<TaskStatus[]> {
  const b = e.allocateBatchID(requests.length);
  e.submitTransfer(b, requests);
  const st = await e.waitBatch(b);
  e.freeBatchID(b);
  return st.map((s) => s.status);
}

describe('engine metrics port: /metrics and /health', () => {
  let envReason: string | null = null;
  let target: TransferEngine;
  let init: { e: TransferEngine; port: number };
  before(async () => {
    envReason = ensureInteropEnv();
    target = new TransferEngine();
    await target.init('127.0.0.1');
    init = await engineWithMetrics();
  });
  after(async () => {
    await init.e.close();
    await target.close();
  });

  it('counts requests, bytes, results and latency by opcode and transport', async () => {
    const { e, port } = init;
    const remote = target.registerLocalMemory(new Uint8Array(64 * KiB));
    const local = e.registerLocalMemory(new Uint8Array(64 * KiB));
    const other = e.registerLocalMemory(new Uint8Array(4 * KiB));
    const seg = await e.openSegment(target.segmentName);
    const write = (i: number): TransferRequest => ({ opcode: TransferOpcode.WRITE, source: local + i * 4 * KiB, targetId: seg, targetOffset: remote + i * 4 * KiB, length: 4 * KiB });
    assert.deepEqual(await run(e, Array.from({ length: 8 }, (_, i) => write(i))), Array(8).fill(TaskStatus.COMPLETED));
    assert.deepEqual(await run(e, [{ opcode: TransferOpcode.READ, source: local, targetId: seg, targetOffset: remote, length: 16 * KiB }]), [TaskStatus.COMPLETED]);
    // Our own memory: the memory-copy transport.
    assert.deepEqual(await run(e, [{ opcode: TransferOpcode.WRITE, source: local, targetId: 0, targetOffset: other, length: 1024 }]), [TaskStatus.COMPLETED]);

    const r = await get(port, '/metrics');
    assert.equal(r.status, 200);
    assert.equal(r.type, 'text/plain; version=0.0.4; charset=utf-8');
    const m = samples(r.body);
    assert.equal(m.get('transfer_requests_total{opcode="write",transport="tcp"}'), 8);
    assert.equal(m.get('transfer_bytes_total{opcode="write",transport="tcp"}'), 32 * KiB);
    assert.equal(m.get('transfer_requests_total{opcode="read",transport="tcp"}'), 1);
    assert.equal(m.get('transfer_bytes_total{opcode="read",transport="tcp"}'), 16 * KiB);
    assert.equal(m.get('transfer_requests_total{opcode="write",transport="memory"}'), 1);
    assert.equal(m.get('transfer_tasks_total{opcode="write",status="completed",code=""}'), 9);
    assert.equal(m.get('transfer_latency_seconds_count{opcode="write"}'), 9);
    assert.equal(m.get('transfer_latency_seconds_bucket{opcode="write",le="+Inf"}'), 9);
    assert.ok(m.get('transfer_latency_seconds_sum{opcode="write"}')! > 0);
    assert.equal(m.get('inflight_transfers'), 0);
    assert.equal(m.get('transfer_failures_total'), 0);
    assert.equal(m.get('transfer_segments{state="open"}'), 1);
    assert.equal(m.get('transfer_registered_regions'), 2);
    assert.equal(m.get('transfer_registered_bytes'), 68 * KiB);
    assert.ok(m.get('transfer_lanes')! >= 1, 'lanes to the target are open');
    // The target counted what it served.
    const served = target.stats().requestsServed;
    assert.ok(served >= 9, `target served ${served}`);
  });

  it("the Prometheus project's parser reads every family, with its type", async (t) => {
    if (envReason) return t.skip(envReason); // outside CI only: under CI a missing environment throws in before()
    const r = await get(init.port, '/metrics');
    const families = parseWithPrometheus(r.body);
    // prometheus_client names counters without their _total suffix.
    assert.deepEqual(families['transfer_requests'], ['counter', 3]);
    assert.equal(families['transfer_latency_seconds']?.[0], 'histogram');
    assert.deepEqual(families['inflight_transfers'], ['gauge', 1]);
    assert.equal(Object.keys(families).length, r.body.split('\n').filter((l) => l.startsWith('# TYPE')).length, 'every family read');
  });

  it('failures are counted by status and code', async () => {
    const { e, port } = init;
    const local = e.registerLocalMemory(new Uint8Array(4 * KiB));
    const seg = await e.openSegment(target.segmentName);
    // Outside every region the peer registered: the peer refuses it (TE_ADDRESS_REJECTED).
    const st = await run(e, [{ opcode: TransferOpcode.WRITE, source: local, targetId: seg, targetOffset: 1n << 50n, length: 4 * KiB }]);
    assert.deepEqual(st, [TaskStatus.FAILED]);
    const m = samples((await get(port, '/metrics')).body);
    assert.equal(m.get('transfer_tasks_total{opcode="write",status="failed",code="TE_ADDRESS_REJECTED"}'), 1);
    assert.ok(m.get('transfer_failures_total')! >= 1);
  });

  it('/health: 200 while serving; 503 with the reason once tcp is uninstalled; HEAD works, POST is refused', async () => {
    const { e, port } = init;
    const ok = await get(port, '/health');
    assert.equal(ok.status, 200);
    assert.deepEqual(JSON.parse(ok.body), { status: 'serving', segment: e.segmentName, engineId: e.engineId });
    assert.equal((await get(port, '/health', 'HEAD')).status, 200);
    assert.equal((await get(port, '/metrics', 'POST')).status, 405);
    await e.uninstallTransport('tcp');
    try {
      const down = await get(port, '/health');
      assert.equal(down.status, 503);
      assert.match((JSON.parse(down.body) as { reason: string }).reason, /tcp transport is uninstalled/);
    } finally {
      await e.installTransport('tcp');
    }
    assert.equal((await get(port, '/health')).status, 200);
  });

  it('garbage: odd query strings and paths, raw bytes, the metadata store (off here); the port goes on serving', async () => {
    const { port } = init;
    assert.equal((await get(port, '/metrics?%%%zz&x=%ff&&=;a[]=1&a[]=<script>')).status, 200);
    assert.equal((await get(port, '/health?' + 'a'.repeat(4000))).status, 200);
    assert.equal((await get(port, '/metadata?key=x')).status, 404, 'no metadata store on a metrics port');
    assert.equal((await get(port, '/metadata?key=x', 'PUT')).status, 404, 'nothing can be stored there');
    assert.equal((await get(port, '/../../etc/passwd')).status, 404);
    const raw = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('\u0000\u0001GARBAGE / HTTP/9.9\r\n\r\n'));
      let got = '';
      s.on('data', (d) => (got += d.toString('latin1')));
      s.on('close', () => resolve(got));
      s.on('error', () => resolve(got));
    });
    assert.match(raw, /^HTTP\/1\.1 400/);
    // A client that sends half a request and stalls holds one socket, not the port.
    const slow = net.connect(port, '127.0.0.1', () => slow.write('GET /metr'));
    try {
      for (let i = 0; i < 5; i++) assert.equal((await get(port, '/metrics')).status, 200);
    } finally {
      slow.destroy();
    }
  });

  it('scrapes during close(): each answered or refused, close() completes, the port is released', async () => {
    const { e, port } = await engineWithMetrics();
    let stop = false;
    const statuses: Array<number | string> = [];
    const scraper = (async () => {
      while (!stop) {
        try {
          statuses.push((await get(port, '/health')).status);
        } catch (err) {
          statuses.push((err as NodeJS.ErrnoException).code ?? 'error');
          if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED') return;
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 50));
    await e.close();
    stop = true;
    await scraper;
    assert.ok(statuses.length > 0);
    for (const s of statuses) assert.ok(s === 200 || s === 503 || s === 'ECONNREFUSED' || s === 'ECONNRESET', String(s));
    await assert.rejects(get(port, '/health'), { code: 'ECONNREFUSED' });
  });

  it('a metrics port in use: init fails naming where the port came from, releases what it bound, and can be retried; bad ports are refused', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen({ host: '127.0.0.1', port: 0 }, () => r()));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const fromEnv = new TransferEngine({ env: { ...process.env, TE_METRICS_PORT: String(port) } });
      await assert.rejects(fromEnv.init('127.0.0.1'), (err: Error & { code?: string }) => err.code === 'TE_PORT_IN_USE' && /TE_METRICS_PORT/.test(err.message));
      assert.equal(fromEnv.lifecycle, 'new');
      const fromOption = new TransferEngine({ metricsPort: port });
      await assert.rejects(fromOption.init('127.0.0.1'), (err: Error & { code?: string }) => err.code === 'TE_PORT_IN_USE' && /metricsPort option/.test(err.message));
      await assert.rejects(new TransferEngine({ metricsPort: 70000 }).init('127.0.0.1'), { code: 'TE_INVALID_ARGUMENT' });
      await assert.rejects(new TransferEngine({ env: { ...process.env, TE_METRICS_PORT: 'x' } }).init('127.0.0.1'), { code: 'TE_BAD_ENV' });
      // The failed init released what it had bound: once the port is free, the same engine starts.
      await new Promise<void>((r) => blocker.close(() => r()));
      await fromOption.init('127.0.0.1');
      try {
        assert.equal((await get(port, '/health')).status, 200);
      } finally {
        await fromOption.close();
      }
    } finally {
      if (blocker.listening) blocker.close();
    }
  });
});

describe('metadata server: /metrics', () => {
  it('keys, stored bytes and requests by method, path and status', async () => {
    const s = await MetadataHttpServer.start({ host: '127.0.0.1', port: 0 });
    try {
      const put = await new Promise<number>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: s.port, path: '/metadata?key=a', method: 'PUT', agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end('{"x":1}');
      });
      assert.equal(put, 200);
      assert.equal((await get(s.port, '/metadata?key=a')).status, 200);
      assert.equal((await get(s.port, '/metadata?key=nope')).status, 404);
      const r = await get(s.port, '/metrics');
      assert.equal(r.status, 200);
      const m = samples(r.body);
      assert.equal(m.get('metadata_server_keys'), 1);
      assert.equal(m.get('metadata_server_stored_bytes'), 7);
      assert.equal(m.get('metadata_server_requests_total{method="PUT",path="/metadata",code="200"}'), 1);
      assert.equal(m.get('metadata_server_requests_total{method="GET",path="/metadata",code="200"}'), 1);
      assert.equal(m.get('metadata_server_requests_total{method="GET",path="/metadata",code="404"}'), 1);
    } finally {
      await s.close();
    }
  });
});

describe('diagnostics_channel events', () => {
  it('submit, complete, error, connect, handshake: the documented shapes, from real transfers', async () => {
    const names = ['transfer:submit', 'transfer:complete', 'transfer:error', 'connect', 'handshake', 'retry', 'peer-pause'] as const;
    const seen = new Map<string, Array<Record<string, unknown>>>(names.map((n) => [n, []]));
    const subs = names.map((n) => {
      const fn = (msg: unknown): void => {
        seen.get(n)!.push(msg as Record<string, unknown>);
      };
      diagnostics.subscribe(`transfer-engine:${n}`, fn);
      return [n, fn] as const;
    });
    const target = new TransferEngine();
    const e = new TransferEngine({ env: { ...process.env, MC_RETRY_CNT: '1', TE_PEER_PAUSE_MS: '60000' } });
    try {
      await target.init('127.0.0.1');
      await e.init('127.0.0.1');
      const remote = target.registerLocalMemory(new Uint8Array(8 * KiB));
      const local = e.registerLocalMemory(new Uint8Array(8 * KiB));
      const seg = await e.openSegment(target.segmentName);
      assert.deepEqual(await run(e, [{ opcode: TransferOpcode.WRITE, source: local, targetId: seg, targetOffset: remote, length: 4 * KiB }]), [TaskStatus.COMPLETED]);
      const submit = seen.get('transfer:submit')!.at(-1)!;
      assert.deepEqual(Object.keys(submit).sort(), ['batchId', 'engineId', 'length', 'opcode', 'segment', 'taskId']);
      assert.equal(submit['engineId'], e.engineId);
      assert.equal(submit['opcode'], 'write');
      assert.equal(submit['length'], 4 * KiB);
      const done = seen.get('transfer:complete')!.find((c) => c['engineId'] === e.engineId)!;
      assert.deepEqual(Object.keys(done).sort(), ['batchId', 'bytes', 'durationMs', 'engineId', 'opcode', 'taskId', 'transport']);
      assert.equal(done['transport'], 'tcp');
      assert.equal(done['bytes'], 4 * KiB);
      assert.equal(done['batchId'], submit['batchId']);
      const hs = seen.get('handshake')!.find((h) => h['engineId'] === e.engineId)!;
      assert.deepEqual(hs, { ...hs, segment: target.segmentName, type: 'metadata', ok: true });
      assert.ok(seen.get('connect')!.some((c) => c['ok'] === true && c['port'] === target.dataPort));

      // The target goes away: the task fails after one retry round; connects fail; the peer is paused.
      const dataPort = target.dataPort;
      await target.close();
      assert.deepEqual(await run(e, [{ opcode: TransferOpcode.WRITE, source: local, targetId: seg, targetOffset: remote, length: 4 * KiB }]), [TaskStatus.FAILED]);
      const err = seen.get('transfer:error')!.find((x) => x['engineId'] === e.engineId)!;
      assert.equal(typeof err['code'], 'string');
      assert.equal(typeof err['message'], 'string');
      assert.ok(seen.get('connect')!.some((c) => c['ok'] === false && c['port'] === dataPort && typeof c['error'] === 'string'));
      const retry = seen.get('retry')!.find((x) => x['engineId'] === e.engineId);
      assert.ok(retry, 'a retry round was announced');
      assert.deepEqual(Object.keys(retry).sort(), ['engineId', 'round', 'segment', 'slices']);
    } finally {
      for (const [n, fn] of subs) diagnostics.unsubscribe(`transfer-engine:${n}`, fn);
      await e.close();
      await target.close();
    }
  });
});
