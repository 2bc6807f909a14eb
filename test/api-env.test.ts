/**
 * Mooncake's environment variables through the high-level API: each malformed
 * value is one ERR_BAD_ENV at initialize naming the variable; each valid one
 * is honoured (bind address, legacy port, metadata default, topology source
 * addresses, metrics lines, log level). MC_TRANSFER_TIMEOUT's effect is tested
 * in api-transfer.test.ts (a stopped peer).
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { TransferEngine, ERR_BAD_ENV, ERR_PEER_UNREACHABLE, ERR_ADDRESS_NOT_REGISTERED } from '../src/index.js';
import { parseTopology } from '../src/api/topology.js';
import { formatMetricsLine } from '../src/api/metrics.js';
import { syncDeadlineMs } from '../src/api/env.js';
import { TransferEngineError } from '../src/errors.js';
import { spawnPeer } from './helpers.js';
import { fillPattern } from './pattern.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const dir = mkdtempSync(join(os.tmpdir(), 'te-env-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

type Env = Record<string, string | undefined>;

/** An engine reading only `env` (plus a quiet log unless a sink is given). */
function engineWith(env: Env, lines?: string[]): TransferEngine {
  return new TransferEngine({ env: { MC_LOG_LEVEL: 'ERROR', ...env }, ...(lines ? { log: (l: string) => lines.push(l) } : {}) });
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe('a malformed value is ERR_BAD_ENV at initialize, naming the variable', () => {
  const cases: Array<[string, Env]> = [
    ['MC_TRANSFER_TIMEOUT', { MC_TRANSFER_TIMEOUT: 'abc' }],
    ['MC_TRANSFER_TIMEOUT', { MC_TRANSFER_TIMEOUT: '0' }],
    ['MC_LEGACY_RPC_PORT_BINDING', { MC_LEGACY_RPC_PORT_BINDING: 'maybe' }],
    ['MC_TCP_BIND_ADDRESS', { MC_TCP_BIND_ADDRESS: 'not-an-ip' }],
    ['MC_TCP_BIND_ADDRESS', { MC_TCP_BIND_ADDRESS: '192.0.2.254' }],
    ['MC_TE_METRIC', { MC_TE_METRIC: 'sometimes' }],
    ['MC_TE_METRIC_INTERVAL_SECONDS', { MC_TE_METRIC_INTERVAL_SECONDS: '0' }],
    ['MC_TE_METRIC_INTERVAL_SECONDS', { MC_TE_METRIC_INTERVAL_SECONDS: '1.5' }],
    ['MC_TE_METRIC_INTERVAL_SECONDS', { MC_TE_METRIC: '0', MC_TE_METRIC_INTERVAL_SECONDS: 'x' }],
    ['MC_LOG_LEVEL', { MC_LOG_LEVEL: 'LOUD' }],
    ['MC_CUSTOM_TOPO_JSON', { MC_CUSTOM_TOPO_JSON: '/nonexistent/topo.json' }],
    ['MC_CUSTOM_TOPO_JSON', { MC_CUSTOM_TOPO_JSON: file('bad.json', '{"cpu:0": [["lo"]') }],
    ['MC_CUSTOM_TOPO_JSON', { MC_CUSTOM_TOPO_JSON: file('array.json', '[["lo"], []]') }],
    ['MC_CUSTOM_TOPO_JSON', { MC_CUSTOM_TOPO_JSON: file('shape.json', '{"cpu:0": ["lo", "lo"]}') }],
    ['MC_CUSTOM_TOPO_JSON', { MC_CUSTOM_TOPO_JSON: file('nic.json', '{"cpu:0": [["nosuchnic0"], []]}') }],
    ['MC_CUSTOM_TOPO_JSON', { MC_CUSTOM_TOPO_JSON: file('empty.json', '{}') }],
  ];
  for (const [name, env] of cases) {
    test(`${name}=${JSON.stringify(Object.values(env).at(-1))}`, async () => {
      const e = new TransferEngine({ env, log: () => {} });
      assert.equal(await e.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), ERR_BAD_ENV);
      const err = e.getLastError()!;
      assert.equal(err.code, 'TE_BAD_ENV');
      assert.ok(err.message.includes(name), `the message names ${name}: ${err.message}`);
      assert.equal(e.getRpcPort(), -5 /* still not initialized */);
      await e.close();
    });
  }

  test('MC_METADATA_SERVER, used when the argument is empty, is named when it cannot be used', async () => {
    const e = engineWith({ MC_METADATA_SERVER: 'bogus://nowhere' });
    const r = await e.initialize('127.0.0.1', '', 'tcp', '');
    assert.ok(r < 0);
    assert.match(e.getLastError()!.message, /MC_METADATA_SERVER="bogus:\/\/nowhere"/);
    await e.close();
  });
});

describe('valid values are honoured', () => {
  test('MC_METADATA_SERVER fills an empty argument; an explicit argument wins', async () => {
    const a = engineWith({ MC_METADATA_SERVER: 'P2PHANDSHAKE' });
    assert.equal(await a.initialize('127.0.0.1', '', 'tcp', ''), 0);
    await a.close();
    const b = engineWith({ MC_METADATA_SERVER: 'bogus://nowhere' });
    assert.equal(await b.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    await b.close();
  });

  test('MC_LEGACY_RPC_PORT_BINDING takes the RPC port from local_hostname', async () => {
    const port = await freePort(); // an ephemeral port: outside the random range [15000, 17000]
    const legacy = engineWith({ MC_LEGACY_RPC_PORT_BINDING: '1' });
    assert.equal(await legacy.initialize(`127.0.0.1:${port}`, 'P2PHANDSHAKE', 'tcp', ''), 0);
    assert.equal(legacy.getRpcPort(), port);
    await legacy.close();
    const modern = engineWith({});
    assert.equal(await modern.initialize(`127.0.0.1:${port}`, 'P2PHANDSHAKE', 'tcp', ''), 0);
    assert.notEqual(modern.getRpcPort(), port, 'without it the port in the name is ignored (P2P)');
    await modern.close();
  });

  test('MC_TCP_BIND_ADDRESS chooses the listening address', async () => {
    const prober = engineWith({});
    assert.equal(await prober.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    const wide = engineWith({ MC_TCP_BIND_ADDRESS: '0.0.0.0' });
    assert.equal(await wide.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    assert.equal(await prober.sendProbe(`127.0.0.2:${wide.getRpcPort()}`), 0, 'listening on every address');
    const narrow = engineWith({});
    assert.equal(await narrow.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    assert.equal(await prober.sendProbe(`127.0.0.2:${narrow.getRpcPort()}`), ERR_PEER_UNREACHABLE, 'by default only the host name\'s address');
    await Promise.all([prober.close(), wide.close(), narrow.close()]);
  });

  test('MC_TRANSFER_TIMEOUT sets the sync deadline, plus 1 ns per byte', () => {
    assert.equal(syncDeadlineMs(30_000, 0), 30_000);
    assert.equal(syncDeadlineMs(1000, 1e9), 2000, '1 GB adds a second');
  });

  test('MC_CUSTOM_TOPO_JSON: the preferred device of a location is the source address of its connections', async () => {
    const peer = await spawnPeer();
    const topo = file('src.json', JSON.stringify({ 'cpu:0': [['127.0.0.2'], ['lo']], 'cpu:1': [['lo'], []] }));
    const e = engineWith({ MC_CUSTOM_TOPO_JSON: topo });
    try {
      assert.equal(await e.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      assert.deepEqual(JSON.parse(await e.getLocalTopology()), { 'cpu:0': [['127.0.0.2'], ['lo']], 'cpu:1': [['lo'], []] });
      assert.deepEqual(JSON.parse(await e.getLocalTopology('lo')), { 'cpu:0': [[], ['lo']], 'cpu:1': [['lo'], []] });
      const a = new Uint8Array(64 * KiB);
      const b = new Uint8Array(64 * KiB);
      assert.equal(e.registerMemory(a, a.length, 'cpu:0'), 0);
      assert.equal(e.registerMemory(b, b.length, 'cpu:1'), 0);
      const remote = await peer.register(64 * KiB);
      assert.equal(await e.transferSyncWrite(peer.segmentName, e.getBufferAddress(a), remote, a.length), 0);
      assert.deepEqual(sourcesTo(peer.dataPort), ['127.0.0.2'], 'cpu:0 memory leaves from 127.0.0.2');
      assert.equal(await e.transferSyncWrite(peer.segmentName, e.getBufferAddress(b), remote, b.length), 0);
      assert.deepEqual(sourcesTo(peer.dataPort), ['127.0.0.1', '127.0.0.2'], 'cpu:1 memory leaves from lo (127.0.0.1)');
    } finally {
      await e.close();
      await peer.stop();
    }
  });

  test('MC_CUSTOM_TOPO_JSON with an interface name: its IPv4 address is the source', async (t) => {
    const nic = Object.entries(os.networkInterfaces()).find(([, l]) => l?.some((x) => x.family === 'IPv4' && !x.internal));
    if (!nic) {
      t.skip('this host has no non-loopback IPv4 interface');
      return;
    }
    const [name, addrs] = nic;
    const ip = addrs!.find((x) => x.family === 'IPv4')!.address;
    const peer = await spawnPeer();
    const e = engineWith({ MC_CUSTOM_TOPO_JSON: file('nic-ok.json', JSON.stringify({ 'cpu:0': [[name], []] })) });
    try {
      assert.equal(await e.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      const a = new Uint8Array(4096);
      e.registerMemory(a, a.length, 'cpu:0');
      assert.equal(await e.transferSyncWrite(peer.segmentName, e.getBufferAddress(a), await peer.register(4096), 4096), 0);
      assert.deepEqual(sourcesTo(peer.dataPort), [ip]);
    } finally {
      await e.close();
      await peer.stop();
    }
  });

  test('MC_TE_METRIC: one throughput line per active interval, none when idle; getMetrics() reads the same counters', async () => {
    const lines: string[] = [];
    const e = new TransferEngine({ env: { MC_TE_METRIC: 'on', MC_TE_METRIC_INTERVAL_SECONDS: '1' }, log: (l) => lines.push(l) });
    assert.equal(await e.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    const src = new Uint8Array(MiB);
    const dst = new Uint8Array(MiB);
    fillPattern(src, 1);
    e.registerMemory(src, MiB);
    e.registerMemory(dst, MiB);
    const self = `127.0.0.1:${e.getRpcPort()}`;
    assert.equal(await e.transferSyncWrite(self, e.getBufferAddress(src), e.getBufferAddress(dst), MiB), 0);
    assert.equal(await e.transferSyncRead(self, e.getBufferAddress(dst), e.getBufferAddress(src), 4096), 0);
    assert.deepEqual(e.getMetrics(), { bytesWritten: MiB, bytesRead: 4096, tasksCompleted: 2, tasksFailed: 0 });
    const metricLines = (): string[] => lines.filter((l) => l.includes('[Metrics]'));
    const until = Date.now() + 3000;
    while (metricLines().length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.equal(metricLines().length, 1, lines.join('\n'));
    assert.match(metricLines()[0]!, /^\[transfer-engine\] INFO \[Metrics\] Transfer Engine Stats \(over last 1s\): Throughput: 1\.05 MB\/s \| written 1\.00 MiB, read 4\.00 KiB \| tasks 2 completed, 0 failed$/);
    await new Promise((r) => setTimeout(r, 1300));
    assert.equal(metricLines().length, 1, 'an idle interval prints nothing');
    await e.close();
  });

  test('MC_LOG_LEVEL: WARNING hides INFO, TRACE shows transfers, ERROR hides failures', async () => {
    const runWith = async (level: string): Promise<string[]> => {
      const lines: string[] = [];
      const e = new TransferEngine({ env: { MC_LOG_LEVEL: level }, log: (l) => lines.push(l) });
      assert.equal(await e.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      const m = new Uint8Array(64);
      e.registerMemory(m, 64);
      const ptr = e.getBufferAddress(m);
      assert.equal(await e.transferSyncWrite(`127.0.0.1:${e.getRpcPort()}`, ptr, ptr + 32, 32), 0);
      assert.equal(e.readBytesFromBuffer(0x7000_0000_0000, 1), null); // a failure
      assert.equal(e.getLastError()!.returnCode, ERR_ADDRESS_NOT_REGISTERED);
      await e.close();
      return lines.map((l) => l.split(' ')[1]!);
    };
    assert.deepEqual(await runWith('warning'), ['WARNING']);
    assert.deepEqual(await runWith('TRACE'), ['INFO', 'TRACE', 'WARNING']);
    assert.deepEqual(await runWith('INFO'), ['INFO', 'WARNING']);
    assert.deepEqual(await runWith('ERROR'), []);
  });
});

describe('topology and metrics formats', () => {
  const ifaces = {
    lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
    eth0: [{ address: '10.1.2.3', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: '10.1.2.3/24' }],
    ib0: [{ address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:02', internal: false, cidr: 'fe80::1/64', scopeid: 3 }],
  } as unknown as NodeJS.Dict<os.NetworkInterfaceInfo[]>;

  test("parses Mooncake's format; a location's first preferred device gives its source address", () => {
    const t = parseTopology('{"cpu:0": [["eth0"], ["lo"]], "cpu:1": [[], ["eth0"]], "cuda:0": [["127.0.0.5"], []]}', 'x.json', ifaces);
    assert.equal(t.sourceAddress('cpu:0'), '10.1.2.3');
    assert.equal(t.sourceAddress('cpu:1'), undefined, 'no preference: the OS picks');
    assert.equal(t.sourceAddress('cuda:0'), '127.0.0.5', 'a local IPv4 address works as a device');
    assert.equal(t.sourceAddress('*'), undefined);
  });

  test('every malformed document names MC_CUSTOM_TOPO_JSON and says what is wrong', () => {
    const bad: Array<[string, RegExp]> = [
      ['not json', /not valid JSON/],
      ['null', /JSON object/],
      ['{"cpu:0": [["eth0"], ["lo"], []]}', /\[\[preferred devices\], \[available devices\]\]/],
      ['{"cpu:0": [[""], []]}', /non-empty device names/],
      ['{"cpu:0": [[1], []]}', /non-empty device names/],
      ['{"": [[], []]}', /location name is empty/],
      ['{"cpu:0": [["ib0"], []]}', /"ib0" has no IPv4 address/],
      ['{"cpu:0": [["eth9"], []]}', /"eth9" does not exist on this host \(have: lo, eth0, ib0\)/],
      ['{"cpu:0": [[], ["10.9.9.9"]]}', /10\.9\.9\.9 is not assigned/],
      ['{"cpu:0": [["::1"], []]}', /IPv6/],
    ];
    for (const [text, why] of bad) {
      assert.throws(
        () => parseTopology(text, 'x.json', ifaces),
        (e: unknown) => e instanceof TransferEngineError && e.code === 'TE_BAD_ENV' && e.message.includes('MC_CUSTOM_TOPO_JSON') && why.test(e.message),
        text,
      );
    }
  });

  test('metrics line: throughput over the interval, null when idle', () => {
    const z = { bytesWritten: 0, bytesRead: 0, tasksCompleted: 0, tasksFailed: 0 };
    assert.equal(formatMetricsLine(z, z, 5), null);
    assert.equal(
      formatMetricsLine(z, { bytesWritten: 10_000_000, bytesRead: 0, tasksCompleted: 3, tasksFailed: 1 }, 5),
      '[Metrics] Transfer Engine Stats (over last 5s): Throughput: 2.00 MB/s | written 9.54 MiB, read 0 B | tasks 3 completed, 1 failed',
    );
  });
});

/** Local IPv4 addresses of this machine's established TCP connections to `port` (Linux /proc/net/tcp). */
function sourcesTo(port: number): string[] {
  const out = new Set<string>();
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[3] !== '01') continue; // ESTABLISHED
    const [lHex, lPort] = f[1]!.split(':');
    const rPort = parseInt(f[2]!.split(':')[1]!, 16);
    if (rPort !== port || parseInt(lPort!, 16) === port) continue;
    const n = parseInt(lHex!, 16);
    out.add([n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].join('.'));
  }
  return [...out].sort();
}
