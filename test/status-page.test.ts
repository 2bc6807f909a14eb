/**
 * The status page (issue 20): a metadata server and a Store master serve `/`
 * (and `/ui`) with `/status.json`, built from the descriptors they hold and
 * each engine's own /status.json on the metrics port its descriptor
 * advertises. Real engines move real bytes while headless Chromium (Debian's
 * chromium, over the DevTools pipe) loads the page: the DOM must show the
 * live segments, their buffers and peers, a chart that moves, the errors; a
 * screenshot is saved under test-artifacts/. Bad input: garbage queries,
 * hostile segment names, engines that never answer, a flood of page loads.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TransferEngine, TransferOpcode, type TransferRequest } from '../src/core.js';
import { MetadataHttpServer } from '../src/metadata/http-server.js';
import { StoreMaster } from '../src/master/master.js';
import { MooncakeDistributedStore } from '../src/store.js';
import type { ClusterStatus, EngineStatus } from '../src/status/types.js';
import { Browser } from './chromium.js';
import { freePort, httpGet } from './servers.js';

const KiB = 1024;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Screenshots land here (kept out of git); CI leaves them in its clone. */
const ARTIFACTS = process.env['TE_TEST_ARTIFACTS'] ?? path.join(ROOT, 'test-artifacts');

const get = httpGet;

function put(url: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'PUT', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function status(port: number): Promise<ClusterStatus> {
  const r = await get(port, '/status.json');
  assert.equal(r.status, 200, r.body);
  assert.match(r.type, /^application\/json/);
  return JSON.parse(r.body) as ClusterStatus;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A Mooncake-shaped descriptor (no metrics_port): listed from the metadata alone. */
function mooncakeDescriptor(name: string): string {
  return JSON.stringify({ name, protocol: 'tcp', tcp_data_port: 1, tcp_proto_version: 2, timestamp: 't', buffers: [{ name, addr: 140000000000000, length: 1048576 }] });
}

/** Engines moving bytes until stopped: A writes then reads B's buffer in 64 KiB requests. */
class Traffic {
  private stopped = false;
  rounds = 0;
  readonly done: Promise<void>;
  constructor(a: TransferEngine, handle: number, local: number, remote: number) {
    this.done = (async () => {
      while (!this.stopped) {
        for (const opcode of [TransferOpcode.WRITE, TransferOpcode.READ]) {
          const batch = a.allocateBatchID(8);
          const reqs: TransferRequest[] = Array.from({ length: 8 }, (_, i) => ({ opcode, source: local + i * 64 * KiB, targetId: handle, targetOffset: remote + i * 64 * KiB, length: 64 * KiB }));
          a.submitTransfer(batch, reqs);
          await a.waitBatch(batch);
          a.freeBatchID(batch);
        }
        this.rounds++;
        await sleep(5); // a steady stream, not a saturated one: the machine runs the browser too
      }
    })();
  }
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

describe('status page: a metadata server and its engines', () => {
  let server: MetadataHttpServer;
  let a: TransferEngine;
  let b: TransferEngine;
  let aMetrics = 0;
  let traffic: Traffic;
  let handle: number;
  let stall: net.Server;
  let stallConnections = 0;
  const liars: http.Server[] = [];
  const stallSockets = new Set<net.Socket>();
  const hostile = '<img src=x onerror="window.__pwned=1">:1';

  before(async () => {
    server = await MetadataHttpServer.start({ host: '127.0.0.1', port: 0 });
    const mk = async (metricsPort: number): Promise<TransferEngine> => {
      const e = new TransferEngine({ metadataServer: server.url, metricsPort, env: { MC_TCP_BIND_ADDRESS: '127.0.0.1' } });
      await e.init(`seg-${Math.random().toString(36).slice(2, 8)}`, '127.0.0.1', 0);
      return e;
    };
    aMetrics = await freePort();
    a = await mk(aMetrics);
    b = await mk(await freePort());
    const local = a.registerLocalMemory(new Uint8Array(512 * KiB));
    const remote = b.registerLocalMemory(new Uint8Array(512 * KiB));
    handle = await a.openSegment(b.segmentName);
    // One request that fails (outside B's buffer): the page's errors table has something to show.
    const bad = a.allocateBatchID(1);
    a.submitTransfer(bad, [{ opcode: TransferOpcode.READ, source: local, targetId: handle, targetOffset: remote + 1024 * KiB, length: 4 * KiB }]);
    await a.waitBatch(bad);
    a.freeBatchID(bad);
    traffic = new Traffic(a, handle, local, remote);
    // Segments the engines did not publish: a Mooncake peer, one whose metrics port never answers, a
    // descriptor that does not decode, and a hostile name.
    stall = net.createServer((s) => {
      stallConnections++;
      stallSockets.add(s);
      s.on('close', () => stallSockets.delete(s));
    });
    await new Promise<void>((r) => stall.listen(0, '127.0.0.1', r));
    const stallPort = (stall.address() as net.AddressInfo).port;
    const base = server.url;
    assert.equal(await put(`${base}?key=${encodeURIComponent('mooncake/ram/mooncake-peer:1')}`, mooncakeDescriptor('mooncake-peer:1')), 200);
    const silent = JSON.parse(mooncakeDescriptor('127.0.0.1:9')) as Record<string, unknown>;
    assert.equal(await put(`${base}?key=${encodeURIComponent('mooncake/ram/127.0.0.1:9')}`, JSON.stringify({ ...silent, metrics_port: stallPort })), 200);
    // Metrics ports that answer, but not with a status document: a huge body, and the wrong shape.
    for (const [name, body] of [['127.0.0.1:10', 'x'.repeat(2 << 20)], ['127.0.0.1:11', '{"segment": 1}']] as const) {
      const liar = http.createServer((_req, res) => res.end(body));
      liars.push(liar);
      await new Promise<void>((r) => liar.listen(0, '127.0.0.1', r));
      const desc = { ...(JSON.parse(mooncakeDescriptor(name)) as Record<string, unknown>), metrics_port: (liar.address() as net.AddressInfo).port };
      assert.equal(await put(`${base}?key=${encodeURIComponent(`mooncake/ram/${name}`)}`, JSON.stringify(desc)), 200);
    }
    assert.equal(await put(`${base}?key=${encodeURIComponent('mooncake/ram/broken:1')}`, '{"name": "broken:1", "protocol": "carrier-pigeon"}'), 200);
    assert.equal(await put(`${base}?key=${encodeURIComponent(`mooncake/ram/${hostile}`)}`, mooncakeDescriptor(hostile)), 200);
  });

  after(async () => {
    await traffic?.stop();
    await a?.close();
    await b?.close();
    for (const s of stallSockets) s.destroy();
    await new Promise((r) => stall?.close(r));
    for (const l of liars) await new Promise((r) => l.close(r));
    await server?.close();
  });

  it("an engine's own /status.json: its buffers, its peer and what it moved there, its failure", async () => {
    const r = await get(aMetrics, '/status.json');
    assert.equal(r.status, 200);
    const doc = JSON.parse(r.body) as EngineStatus;
    assert.equal(doc.segment, a.segmentName);
    assert.equal(doc.state, 'ready');
    assert.equal(doc.notServing, null);
    assert.equal(doc.buffersTotal, 1);
    assert.equal(doc.buffers[0]!.length, 512 * KiB);
    const peer = doc.peers.find((p) => p.segment === b.segmentName);
    assert.ok(peer, JSON.stringify(doc.peers));
    assert.ok(peer.bytesRead > 0 && peer.bytesWritten > 0, JSON.stringify(peer));
    assert.ok(peer.failed >= 1);
    assert.equal(doc.errors[0]?.peer, b.segmentName);
    assert.equal(doc.errors[0]?.opcode, 'read');
    assert.ok(doc.totals.tasksCompleted > 0);
  });

  it('/status.json lists every segment: engines up with rates, the others as what they are', async () => {
    await status(server.port);
    await sleep(1200);
    const doc = await status(server.port);
    assert.equal(doc.server, 'metadata-server');
    const by = new Map(doc.segments.map((s) => [s.name, s]));
    const sa = by.get(a.segmentName)!;
    const sb = by.get(b.segmentName)!;
    assert.equal(sa.reach, 'up', sa.detail);
    assert.equal(sb.reach, 'up', sb.detail);
    assert.equal(sa.engine!.engineId > 0, true);
    assert.match(sa.rpc ?? '', /^127\.0\.0\.1:\d+$/);
    assert.ok((sa.readRate ?? 0) > 0 && (sa.writeRate ?? 0) > 0, `A moves bytes: ${sa.readRate} ${sa.writeRate}`);
    assert.equal(sb.bufferBytes, 512 * KiB);
    assert.equal(by.get('mooncake-peer:1')?.reach, 'no-metrics');
    assert.equal(by.get('127.0.0.1:9')?.reach, 'unreachable');
    assert.match(by.get('127.0.0.1:9')?.detail ?? '', /no answer within/);
    assert.equal(by.get('broken:1')?.reach, 'bad-descriptor');
    assert.equal(by.get('127.0.0.1:10')?.reach, 'unreachable');
    assert.match(by.get('127.0.0.1:10')?.detail ?? '', /larger than 1048576 bytes/);
    assert.equal(by.get('127.0.0.1:11')?.reach, 'unreachable');
    assert.match(by.get('127.0.0.1:11')?.detail ?? '', /did not answer with an engine status document/);
    assert.equal(doc.segmentsTotal, 8);
    assert.ok(doc.history.length >= 2);
    assert.ok(doc.history.some((h) => h.readRate > 0));
    assert.ok(doc.errors.some((e) => e.segment === a.segmentName && e.peer === b.segmentName));
    assert.equal(doc.store, undefined);
  });

  it('a flood of page loads shares samples: the silent engine is asked about once per second, not per request', async () => {
    await sleep(1100);
    const before = stallConnections;
    const replies = await Promise.all(Array.from({ length: 40 }, () => get(server.port, '/status.json')));
    for (const r of replies) assert.equal(r.status, 200);
    assert.ok(stallConnections - before <= 2, `${stallConnections - before} connections to the silent engine for 40 requests`);
  });

  it('garbage paths, queries and methods: clear statuses, the page still served', async () => {
    for (const p of ['/?%zz&&==&x=<script>', '/ui?' + 'a'.repeat(4000), '/status.json?%00', '//', '/ui/']) {
      const r = await get(server.port, p);
      if (p === '//') assert.equal(r.status, 400, p); // not a URL path the server can parse
      else if (p === '/ui/') assert.equal(r.status, 404, p);
      else assert.equal(r.status, 200, p);
    }
    assert.equal((await get(server.port, '/', 'POST')).status, 405);
    assert.equal((await get(server.port, '/status.json', 'DELETE')).status, 405);
    const page = await get(server.port, '/');
    assert.match(page.type, /^text\/html/);
    assert.match(page.body, /<script>/);
    assert.doesNotMatch(page.body, /src=["']?https?:/, 'no external assets');
  });

  it('headless Chromium: live segments, buffers and peers, a moving chart, the errors; a screenshot', async () => {
    const browser = await Browser.launch();
    try {
      await browser.navigate(`http://127.0.0.1:${server.port}/`);
      const rowOf = (name: string): string => `document.querySelector('#segments tr[data-segment=' + ${JSON.stringify(JSON.stringify(name))} + ']')`;
      await browser.waitFor(`${rowOf(a.segmentName)}?.dataset.reach === 'up' && ${rowOf(b.segmentName)}?.dataset.reach === 'up'`, 'both engines up in the table');
      const rowA = await browser.evaluate<string>(`${rowOf(a.segmentName)}.innerText`);
      assert.ok(rowA.includes(b.segmentName), `A's row names its peer: ${rowA}`);
      assert.match(rowA, /serving/);
      assert.match(rowA, /524 KB/, 'its buffer of 512 KiB');
      assert.equal(await browser.evaluate<string>(`${rowOf('mooncake-peer:1')}.dataset.reach`), 'no-metrics');
      assert.equal(await browser.evaluate<string>(`${rowOf('127.0.0.1:9')}.dataset.reach`), 'unreachable');
      // The hostile name is text: no element was made of it and nothing ran.
      assert.equal(await browser.evaluate<string>(`${rowOf(hostile)}.dataset.reach`), 'no-metrics');
      assert.equal(await browser.evaluate<number>(`document.querySelectorAll('#segments img').length`), 0);
      assert.equal(await browser.evaluate<unknown>('window.__pwned ?? null'), null);
      // The chart moves: more points, and different ones, a few seconds later.
      const points = (): Promise<string> => browser.evaluate<string>(`document.getElementById('read-line').getAttribute('points')`);
      await browser.waitFor(`document.getElementById('read-line').getAttribute('points').split(' ').length >= 3`, 'three chart points');
      const first = await points();
      await browser.waitFor(`document.getElementById('read-line').getAttribute('points') !== ${JSON.stringify(first)} && document.getElementById('read-line').getAttribute('points').split(' ').length > ${first.split(' ').length}`, 'the chart to move');
      const ys = (await points()).split(' ').map((p) => Number(p.split(',')[1]));
      assert.ok(ys.some((y) => y < 200), `some point above the baseline (non-zero throughput): ${ys.join(' ')}`);
      assert.doesNotMatch(await browser.evaluate<string>(`document.getElementById('rate-read').textContent`), /^(-|0 B\/s)$/);
      const errors = await browser.evaluate<string>(`document.getElementById('errors').innerText`);
      assert.ok(errors.includes(b.segmentName), errors);
      assert.equal(await browser.evaluate<boolean>(`document.getElementById('store').hidden`), true);
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      const png = await browser.screenshot();
      assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'a PNG');
      const file = path.join(ARTIFACTS, 'status-page.png');
      fs.writeFileSync(file, png);
      console.log(`# status page screenshot: ${file}`);
    } finally {
      await browser.close();
    }
  });
});

describe('status page: a Store master', () => {
  let master: StoreMaster;
  let client: MooncakeDistributedStore;

  before(async () => {
    master = await StoreMaster.start({ rpcAddress: '127.0.0.1', rpcPort: 0, metrics: { host: '127.0.0.1', port: 0 }, httpMetadata: { host: '127.0.0.1', port: 0 } });
    client = new MooncakeDistributedStore({ env: { ...process.env, MC_TCP_BIND_ADDRESS: '127.0.0.1', TE_METRICS_PORT: String(await freePort()) } });
    const rc = await client.setup('127.0.0.1', master.metadataUrl!, 16 * 1024 * 1024, 16 * 1024 * 1024, 'tcp', '', `127.0.0.1:${master.rpcPort}`);
    assert.equal(rc, 0, `setup: ${client.getLastError()?.message}`);
    assert.equal(await client.put('k1', new Uint8Array(64 * KiB).fill(7)), 0);
  });

  after(async () => {
    await client?.close();
    await master?.close();
  });

  it('/status.json on both ports: the store with its mounted segment; the metadata port lists the client engine too', async () => {
    const port = Number(new URL(master.metadataUrl!).port);
    const doc = await status(port);
    assert.equal(doc.server, 'master');
    assert.equal(doc.store?.role, 'leader');
    assert.equal(doc.store?.objects, 1);
    assert.equal(doc.store?.segments.length, 1);
    assert.equal(doc.store?.segments[0]!.capacity, 16 * 1024 * 1024);
    assert.ok(doc.store!.segments[0]!.used >= 64 * KiB);
    const seg = doc.segments.find((s) => s.reach === 'up');
    assert.ok(seg, `the client's engine answers: ${JSON.stringify(doc.segments.map((s) => [s.name, s.reach, s.detail]))}`);
    const metricsDoc = await status(master.metricsPort!);
    assert.equal(metricsDoc.store?.objects, 1);
    assert.equal(metricsDoc.segments.length, 0, 'the metrics port holds no metadata');
    // One scrape of the metadata port carries the master's metrics and the metadata server's own.
    const metrics = (await get(port, '/metrics')).body;
    assert.match(metrics, /^mooncake_master_objects 1$/m);
    assert.match(metrics, /^metadata_server_keys \d+$/m);
  });

  it('headless Chromium: the store section with the mounted segment', async () => {
    const browser = await Browser.launch();
    try {
      await browser.navigate(`http://127.0.0.1:${master.metricsPort!}/ui`);
      await browser.waitFor(`!document.getElementById('store').hidden && document.querySelectorAll('#store-segments tr').length === 1`, 'the mounted segment');
      assert.equal(await browser.evaluate<string>(`document.getElementById('store-objects').textContent`), '1');
      assert.equal(await browser.evaluate<string>(`document.getElementById('store-role').textContent`), 'leader');
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      fs.writeFileSync(path.join(ARTIFACTS, 'status-page-master.png'), await browser.screenshot());
    } finally {
      await browser.close();
    }
  });
});
