/**
 * `npm run bench:tls`: what mutual TLS costs (issue 21). Each round runs
 * `transfer-engine bench --loopback` in clear TCP and with `--tls` (the same
 * throwaway CA and certificate for every run), at 4 KiB, 64 KiB and 1 MiB,
 * READ and WRITE, the order of the two reversed every other round. As the
 * ceiling of what Node's TLS can do here, the same rounds also stream 1 GiB
 * between two Node processes over node:net and over node:tls (one socket,
 * 1 MiB writes, the reader's `onread` buffer reused): no engine at all.
 * Prints medians, spread (min-max) and ratios; --update writes the table
 * into BENCHMARKS.md.
 *
 *   node dist/benchmarks/tls.js [--rounds 5] [--duration 3] [--max-load 0.8]
 *     [--idle-wait 600] [--update]
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { makeCa, makeCert, tlsEnv } from '../src/cli/pki.js';
import { median, sizeLabel, updateBenchmarksMd, waitIdle } from './lib.js';

const run = promisify(execFile);
const HERE = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(HERE), '../..');
const MAIN = path.join(ROOT, 'dist/src/cli/main.js');
const STREAM_BYTES = 2 ** 30;
const CHUNK = 1 << 20;

// ------------------------------------------------------------------ the stream ceiling (child roles)

/** `tls.js --stream-server <tcp|tls> <cert> <key>`: serve one connection STREAM_BYTES, print the port first. */
function streamServer(kind: string, cert: string, key: string): void {
  const chunk = Buffer.alloc(CHUNK, 0x5a);
  const opts = { isServer: true as const, cert: fs.readFileSync(cert), key: fs.readFileSync(key), minVersion: 'TLSv1.3' as const, ciphers: 'TLS_AES_128_GCM_SHA256' };
  const server = net.createServer((raw) => {
    const sock = kind === 'tls' ? new tls.TLSSocket(raw, opts) : raw;
    let sent = 0;
    const pump = (): void => {
      while (sent < STREAM_BYTES) {
        sent += chunk.length;
        if (!sock.write(chunk)) {
          sock.once('drain', pump);
          return;
        }
      }
      sock.end();
    };
    sock.on('error', () => {});
    sock.on('close', () => server.close());
    if (kind === 'tls') sock.once('secure', pump);
    else pump();
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as net.AddressInfo).port}\n`));
}

/** One streamed GiB, in GB/s: a server child, the reader here. */
async function stream(kind: 'tcp' | 'tls', cert: string, key: string): Promise<number> {
  const child = spawn(process.execPath, [HERE, '--stream-server', kind, cert, key], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', resolve);
    child.once('exit', () => reject(new Error('the stream server exited')));
  });
  const buf = Buffer.alloc(CHUNK);
  let got = 0;
  const started = performance.now();
  const o = { host: '127.0.0.1', port: Number(line), onread: { buffer: buf, callback: (n: number): boolean => ((got += n), true) } };
  const sock = kind === 'tls' ? tls.connect({ ...o, rejectUnauthorized: false, minVersion: 'TLSv1.3' }) : net.connect(o);
  await new Promise<void>((resolve) => sock.once('close', () => resolve()));
  const s = (performance.now() - started) / 1000;
  await new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
  if (got !== STREAM_BYTES) throw new Error(`the ${kind} stream moved ${got} of ${STREAM_BYTES} bytes`);
  return got / s / 1e9;
}

// ------------------------------------------------------------------ the engine runs

interface Case {
  size: number;
  workload: 'read' | 'write';
}
const CASES: Case[] = [4096, 65536, 1 << 20].flatMap((size) => (['read', 'write'] as const).map((workload) => ({ size, workload })));

async function engineRun(c: Case, duration: number, env: NodeJS.ProcessEnv, withTls: boolean): Promise<number> {
  const args = [MAIN, 'bench', '--loopback', `--workload=${c.workload}`, `--size=${c.size}`, `--duration=${duration}`, '--integrity_check=false', '--json', ...(withTls ? ['--tls'] : [])];
  const { stdout } = await run(process.execPath, args, { cwd: ROOT, env, maxBuffer: 1 << 20 });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as { throughput_GBps: number; tls: boolean; failed?: number };
  if (r.tls !== withTls) throw new Error(`asked for tls=${withTls}, the run says ${String(r.tls)}`);
  return r.throughput_GBps;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '5' },
      duration: { type: 'string', default: '3' },
      'max-load': { type: 'string', default: '0.8' },
      'idle-wait': { type: 'string', default: '600' },
      update: { type: 'boolean', default: false },
    },
  });
  const rounds = Number(values.rounds);
  const duration = Number(values.duration);
  const log = (m: string): void => void process.stderr.write(`[bench:tls] ${m}\n`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'te-bench-tls-'));
  try {
    const pki = makeCa(dir);
    const cert = makeCert(pki, 'bench');
    const clearEnv = { ...process.env };
    for (const k of ['TE_TLS_CERT', 'TE_TLS_KEY', 'TE_TLS_CA', 'TE_TLS_PEER_NAME']) Reflect.deleteProperty(clearEnv, k);
    const tlsVars = { ...clearEnv, ...tlsEnv(pki, cert) };
    const load = await waitIdle(Number(values['max-load']), Number(values['idle-wait']), log);
    const clear: number[][] = CASES.map(() => []);
    const secure: number[][] = CASES.map(() => []);
    const streams = { tcp: [] as number[], tls: [] as number[] };
    for (let r = 0; r < rounds; r++) {
      const tlsFirst = r % 2 === 1;
      for (const [i, c] of CASES.entries()) {
        for (const t of tlsFirst ? [true, false] : [false, true]) {
          (t ? secure : clear)[i]!.push(await engineRun(c, duration, t ? tlsVars : clearEnv, t));
        }
      }
      for (const k of tlsFirst ? (['tls', 'tcp'] as const) : (['tcp', 'tls'] as const)) streams[k].push(await stream(k, cert.cert, cert.key));
      log(`round ${r + 1}/${rounds} done`);
    }
    const f = (xs: number[]): string => `${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(3)}-${Math.max(...xs).toFixed(3)})`;
    const lines = [
      `Command: \`npm run bench:tls -- --rounds ${rounds} --duration ${duration}\` (${new Date().toISOString().slice(0, 10)}, 1-min load ${load.toFixed(2)} at start): \`transfer-engine bench --loopback\` (4 threads, batch 16, P2P) without and with \`--tls\`, alternating; GB/s, median (min-max) of ${rounds} rounds.`,
      '',
      '| case | clear TCP | mutual TLS 1.3 | TLS / clear |',
      '|---|---:|---:|---:|',
    ];
    for (const [i, c] of CASES.entries()) {
      lines.push(`| ${sizeLabel(c.size)} ${c.workload} | ${f(clear[i]!)} | ${f(secure[i]!)} | ${(median(secure[i]!) / median(clear[i]!)).toFixed(2)}x |`);
    }
    lines.push(`| ceiling: 1 GiB streamed between two Node processes, one socket (node:net, node:tls) | ${f(streams.tcp)} | ${f(streams.tls)} | ${(median(streams.tls) / median(streams.tcp)).toFixed(2)}x |`);
    const table = lines.join('\n');
    process.stdout.write(`${table}\n`);
    if (values.update) updateBenchmarksMd(ROOT, '<!-- bench:tls begin -->', '<!-- bench:tls end -->', '## Issue 21: what mutual TLS costs', table, log);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--stream-server') streamServer(process.argv[3]!, process.argv[4]!, process.argv[5]!);
else {
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    process.exitCode = 1;
  });
}
