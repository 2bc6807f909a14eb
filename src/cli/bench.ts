/**
 * `transfer-engine bench`: throughput of batched READ/WRITE transfers over TCP,
 * shaped after Mooncake's transfer_engine_bench (v1 flag names, seed 003).
 *
 *   --mode=target      register memory, print the segment name, serve until SIGINT/SIGTERM
 *   --mode=initiator   open --remote_segment and drive batches for --duration seconds
 *   --loopback         both: a target in a child process, the initiator here
 *
 * Metadata: P2PHANDSHAKE by default (segment names are "host:rpcPort"), or
 * --metadata_type=http|etcd|redis with --metadata_servers: the target
 * publishes its segment there and the initiator opens it by name.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as bufferConstants } from 'node:buffer';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  TaskStatus,
  TransferEngine,
  TransferOpcode,
  type BatchID,
  type SegmentDesc,
  type SegmentHandle,
  type TransferRequest,
} from '../core.js';
import { formatFlagHelp, parseFlags, UsageError, type FlagSpecs, type ParsedFlags } from './args.js';
import { metadataConnString, parseMetadataConnString, METADATA_TYPES } from '../metadata/connection.js';
import { TransferEngineError } from '../errors.js';

// ------------------------------------------------------------------ flags

const WORKLOADS = ['read', 'write', 'mix'] as const;
type Workload = (typeof WORKLOADS)[number];

/** Bytes per report unit; the lower-case-b units are bits. */
const REPORT_UNITS = { GB: 1e9, GiB: 2 ** 30, Gb: 1e9 / 8, MB: 1e6, MiB: 2 ** 20, Mb: 1e6 / 8, KB: 1e3, KiB: 2 ** 10, Kb: 1e3 / 8 } as const;
type ReportUnit = keyof typeof REPORT_UNITS;
const UNIT_NAMES = ['GB', 'GiB', 'Gb', 'MB', 'MiB', 'Mb', 'KB', 'KiB', 'Kb'] as const satisfies readonly ReportUnit[];

const MAX_THREADS = 1024;
const MAX_PRECISION = 12;

export const BENCH_FLAGS = {
  mode: {
    type: 'string',
    choices: ['target', 'initiator'],
    description: 'target serves memory; initiator drives transfers against --remote_segment',
    defaultText: 'initiator if --remote_segment is given, else target',
  },
  loopback: { type: 'boolean', description: 'run a target in a child process and the initiator here, on 127.0.0.1' },
  remote_segment: { type: 'string', description: 'segment name (host:port) printed by the target' },
  local_segment: {
    type: 'string',
    description: "this engine's name; in P2P mode only its host part is used",
    defaultText: 'host name for a target, 127.0.0.1 otherwise',
  },
  workload: { type: 'string', choices: WORKLOADS, description: 'request type; mix alternates write and read batches', defaultText: 'mix with --loopback, else read' },
  duration: { type: 'number', description: 'seconds to run', defaultText: '5 with --loopback, else 10' },
  size: { type: 'size', description: 'bytes per request; suffixes K/M/G (1024) or KB/MB/GB (1000)', defaultText: '65536' },
  batch: { type: 'integer', description: 'requests per batch', defaultText: '16' },
  threads: { type: 'integer', description: 'concurrent submit loops', defaultText: '1' },
  integrity_check: {
    type: 'boolean',
    description: 'mix only: write a fresh pattern, read it back, compare',
    defaultText: 'true with --loopback --workload=mix, else false',
  },
  report_unit: { type: 'string', choices: UNIT_NAMES, description: 'throughput unit (b = bits)', defaultText: 'GB' },
  report_precision: { type: 'integer', description: 'decimals in the throughput report', defaultText: '2' },
  json: { type: 'boolean', description: 'print one JSON object as the last stdout line (target: a ready line)' },
  metadata_type: { type: 'string', choices: METADATA_TYPES, description: 'where segments are published and looked up', defaultText: 'p2p' },
  metadata_servers: {
    type: 'string',
    description: 'required unless p2p: http HOST:PORT/metadata (or a URL), etcd H1:2379,H2:2379, redis HOST[:PORT]',
  },
} as const satisfies FlagSpecs;

type BenchFlags = ParsedFlags<typeof BENCH_FLAGS>;

export const BENCH_HELP = `Usage: transfer-engine bench [flags]

Measure batched TCP transfers between two engines (P2P handshake, or a
metadata service with --metadata_type and --metadata_servers).

  transfer-engine bench --loopback                      both sides on this host
  transfer-engine bench --mode=target                   serve; prints the initiator command
  transfer-engine bench --remote_segment=HOST:PORT      run the initiator against a target
  transfer-engine bench --metadata_type=etcd --metadata_servers=H:2379 --local_segment=NAME
                                                        a target published in etcd (initiator: --remote_segment=NAME)

Flags:
${formatFlagHelp(BENCH_FLAGS)}

Exit status: 0 on success, 1 if any transfer or integrity check failed, 2 on a usage error.
`;

interface BenchOptions {
  mode: 'loopback' | 'target' | 'initiator';
  remoteSegment: string;
  localSegment: string;
  workload: Workload;
  durationS: number;
  size: number;
  batch: number;
  threads: number;
  integrityCheck: boolean;
  reportUnit: ReportUnit;
  precision: number;
  json: boolean;
  /** Connection string: P2PHANDSHAKE, http://..., etcd://..., redis://... */
  metadataServer: string;
  /** The flags as given, passed on to a --loopback target and shown in the initiator command. */
  metadataFlags: string[];
}

function pickMode(f: BenchFlags): BenchOptions['mode'] {
  if (f.loopback) {
    if (f.mode !== undefined) throw new UsageError('--loopback runs both sides; do not combine it with --mode');
    if (f.remote_segment !== undefined) throw new UsageError('--loopback starts its own target; do not combine it with --remote_segment');
    return 'loopback';
  }
  const mode = f.mode ?? (f.remote_segment !== undefined ? 'initiator' : 'target');
  if (mode === 'initiator' && !f.remote_segment) {
    throw new UsageError('--mode=initiator needs --remote_segment=HOST:PORT (the name printed by the target)');
  }
  if (mode === 'target' && f.remote_segment !== undefined) throw new UsageError('--remote_segment is for the initiator, not --mode=target');
  return mode === 'target' ? 'target' : 'initiator';
}

function positiveInt(name: string, v: number | undefined, dflt: number, max = Number.MAX_SAFE_INTEGER): number {
  const x = v ?? dflt;
  if (x < 1) throw new UsageError(`--${name}=${x}: must be at least 1`);
  if (x > max) throw new UsageError(`--${name}=${x}: must be at most ${max}`);
  return x;
}

function isReportUnit(u: string): u is ReportUnit {
  return Object.hasOwn(REPORT_UNITS, u);
}

function isWorkload(w: string): w is Workload {
  return (WORKLOADS as readonly string[]).includes(w);
}

/** --metadata_type/--metadata_servers as a connection string (Mooncake's initializeExt rule). */
function resolveMetadata(f: BenchFlags): { conn: string; flags: string[] } {
  const type = f.metadata_type ?? 'p2p';
  const servers = f.metadata_servers;
  if (type === 'p2p') {
    if (servers !== undefined) throw new UsageError('--metadata_servers needs --metadata_type=http, etcd or redis');
    return { conn: 'P2PHANDSHAKE', flags: [] };
  }
  if (servers === undefined || servers.trim() === '') throw new UsageError(`--metadata_type=${type} needs --metadata_servers`);
  try {
    const conn = metadataConnString(type, servers);
    parseMetadataConnString(conn);
    return { conn, flags: [`--metadata_type=${type}`, `--metadata_servers=${servers}`] };
  } catch (e) {
    if (e instanceof TransferEngineError) throw new UsageError(`--metadata_servers=${servers}: ${e.message}`);
    throw e;
  }
}

/** Validate flags and apply the mode's defaults. */
export function resolveOptions(f: BenchFlags): BenchOptions {
  const mode = pickMode(f);
  const metadata = resolveMetadata(f);
  const central = metadata.conn !== 'P2PHANDSHAKE';
  const loopback = mode === 'loopback';
  const workload = f.workload ?? (loopback ? 'mix' : 'read');
  const unit = f.report_unit ?? 'GB';
  if (!isWorkload(workload)) throw new UsageError(`--workload=${workload}: expected read, write or mix`);
  if (!isReportUnit(unit)) throw new UsageError(`--report_unit=${unit}: expected one of ${UNIT_NAMES.join(', ')}`);
  const durationS = f.duration ?? (loopback ? 5 : 10);
  if (!(durationS > 0)) throw new UsageError(`--duration=${durationS}: must be more than 0 seconds`);
  const precision = f.report_precision ?? 2;
  if (precision < 0 || precision > MAX_PRECISION) throw new UsageError(`--report_precision=${precision}: must be between 0 and ${MAX_PRECISION}`);
  const integrityCheck = f.integrity_check ?? (loopback && workload === 'mix');
  if (integrityCheck && workload !== 'mix') {
    throw new UsageError(`--integrity_check needs --workload=mix (it writes, reads back and compares), not ${workload}`);
  }
  const o: BenchOptions = {
    mode,
    remoteSegment: f.remote_segment ?? '',
    // Only a target's name must be dialable from elsewhere; the initiator's is never dialed.
    // In central modes names are keys: each initiator gets its own.
    localSegment: f.local_segment ?? (mode === 'target' ? os.hostname() : central ? `bench-initiator-${os.hostname()}-${process.pid}` : '127.0.0.1'),
    workload,
    durationS,
    size: positiveInt('size', f.size, 65536),
    batch: positiveInt('batch', f.batch, 16),
    threads: positiveInt('threads', f.threads, 1, MAX_THREADS),
    integrityCheck,
    reportUnit: unit,
    precision,
    json: f.json ?? false,
    metadataServer: metadata.conn,
    metadataFlags: metadata.flags,
  };
  if (bufferBytes(o) > bufferConstants.MAX_LENGTH) {
    throw new UsageError(`--size x --batch x --threads = ${bufferBytes(o)} bytes, more than one buffer can hold (${bufferConstants.MAX_LENGTH})`);
  }
  return o;
}

/** Memory each side registers: every thread owns batch*size bytes (Mooncake: buffer >= block*batch*threads). */
function bufferBytes(o: Pick<BenchOptions, 'size' | 'batch' | 'threads'>): number {
  return o.size * o.batch * o.threads;
}

// ------------------------------------------------------------- entry point

/** Run `bench` with its argv; resolves to the exit code. Usage mistakes throw UsageError. */
export async function runBench(argv: readonly string[]): Promise<number> {
  const parsed = parseFlags(argv, BENCH_FLAGS);
  if (parsed.help) {
    process.stdout.write(BENCH_HELP);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument "${parsed.positionals[0]}"`);
  const o = resolveOptions(parsed.flags);
  switch (o.mode) {
    case 'target':
      return runTarget(o);
    case 'initiator':
      return report(o, await runInitiator(o, o.remoteSegment), null);
    case 'loopback':
      return runLoopback(o);
  }
}

// ------------------------------------------------------------------ target

async function runTarget(o: BenchOptions): Promise<number> {
  const engine = new TransferEngine({ metadataServer: o.metadataServer });
  await engine.init(o.localSegment);
  try {
    const bytes = bufferBytes(o);
    engine.registerLocalMemory(Buffer.alloc(bytes), 'cpu:0'); // zeroed: never expose stale process memory to peers
    await engine.flushMetadata(); // central modes: published before initiators are told to start
    announceTarget(engine.segmentName, bytes, o);
    await stopRequested();
  } finally {
    await engine.close();
  }
  if (!o.json) process.stdout.write('Target stopped.\n');
  return 0;
}

function announceTarget(segment: string, bytes: number, o: BenchOptions): void {
  const command = initiatorCommand(segment, o);
  if (o.json) {
    process.stdout.write(`${JSON.stringify({ event: 'target_ready', segment, pid: process.pid, buffer_bytes: bytes, initiator_command: command })}\n`);
    return;
  }
  process.stdout.write(
    `Target ready: segment ${segment}, ${bytes} bytes registered (pid ${process.pid}).\n` +
      `Start an initiator with:\n  ${command}\nStop with Ctrl-C or SIGTERM.\n`,
  );
}

/** The command that runs an initiator against this target, sized to fit its memory. */
function initiatorCommand(segment: string, o: BenchOptions): string {
  const script = process.argv[1] ?? '';
  let bin = `${shellQuote(process.execPath)} ${shellQuote(script)}`;
  // Started through the package bin: repeat that (npx sets npm_command=exec; its bin dir is not on PATH later).
  if (path.basename(script) === 'transfer-engine') bin = process.env['npm_command'] === 'exec' ? 'npx transfer-engine' : 'transfer-engine';
  const meta = o.metadataFlags.map((f) => ` ${shellQuote(f)}`).join('');
  return `${bin} bench --mode=initiator --remote_segment=${shellQuote(segment)}${meta} --size=${o.size} --batch=${o.batch} --threads=${o.threads}`;
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./[\]-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

/**
 * Resolves on SIGINT or SIGTERM, or when the parent that spawned us with an
 * IPC channel (--loopback) goes away, so a killed parent never leaks a target.
 */
function stopRequested(): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      process.off('disconnect', done);
      if (process.connected) process.disconnect();
      resolve();
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
    if (process.connected) process.on('disconnect', done);
  });
}

// --------------------------------------------------------------- initiator

interface Percentiles {
  p50: number;
  p99: number;
  p999: number;
}

/** Per-batch latencies in microseconds, in a growable typed array (no per-sample objects). */
class LatencyRecorder {
  private data = new Float64Array(4096);
  private n = 0;

  add(us: number): void {
    if (this.n === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.n++] = us;
  }

  percentiles(): Percentiles {
    const sorted = this.data.slice(0, this.n).sort();
    const at = (q: number): number => (this.n === 0 ? 0 : round(sorted[Math.min(this.n - 1, Math.ceil(q * this.n) - 1)]!, 1));
    return { p50: at(0.5), p99: at(0.99), p999: at(0.999) };
  }
}

/** Counters shared by all submit loops of one run (one event loop, so no atomics needed). */
class RunState {
  stopped = false;
  /** Ended early by SIGINT/SIGTERM. */
  interrupted = false;
  bytes = 0;
  batches = 0;
  requests = 0;
  failures = 0;
  integrityChecks = 0;
  integrityFailures = 0;
  firstError: string | undefined;
  readonly latency = new LatencyRecorder();

  /** Keep the first message, and print it once: later ones are usually the same cause. */
  error(message: string): void {
    if (this.firstError !== undefined) return;
    this.firstError = message;
    process.stderr.write(`transfer-engine bench: ${message}\n`);
  }
}

/**
 * One submit loop with its own slice of local and remote memory
 * (thread*batch*size + i*size). `--threads` runs several of these on this
 * event loop; real worker threads come with the full bench.
 */
class SubmitLoop {
  private readonly writes: TransferRequest[];
  private readonly reads: TransferRequest[];
  private readonly slice: Buffer;
  private readonly expected: Buffer | null;
  private readonly word = Buffer.alloc(8);

  constructor(
    private readonly engine: TransferEngine,
    private readonly run: RunState,
    private readonly o: BenchOptions,
    private readonly thread: number,
    local: { buf: Buffer; addr: number },
    remote: { handle: SegmentHandle; base: bigint },
  ) {
    const sliceBytes = o.batch * o.size;
    const start = thread * sliceBytes;
    this.slice = local.buf.subarray(start, start + sliceBytes);
    this.expected = o.integrityCheck ? Buffer.alloc(sliceBytes) : null;
    // Built once and reused: the hot loop allocates no request objects.
    const requests = (opcode: TransferOpcode): TransferRequest[] =>
      Array.from({ length: o.batch }, (_, i) => ({
        opcode,
        source: local.addr + start + i * o.size,
        targetId: remote.handle,
        targetOffset: remote.base + BigInt(start + i * o.size),
        length: o.size,
      }));
    this.writes = requests(TransferOpcode.WRITE);
    this.reads = requests(TransferOpcode.READ);
  }

  async loop(deadline: number): Promise<void> {
    for (let iter = 0; !this.run.stopped && performance.now() < deadline; iter++) {
      switch (this.o.workload) {
        case 'read':
          await this.batchOnce(this.reads);
          break;
        case 'write':
          await this.batchOnce(this.writes);
          break;
        case 'mix':
          if (this.expected) await this.checkedRoundTrip(iter, this.expected);
          else await this.batchOnce(iter % 2 === 0 ? this.writes : this.reads);
          break;
      }
    }
  }

  /** Fill with a fresh pattern, WRITE it, zero the slice, READ it back, compare. */
  private async checkedRoundTrip(iter: number, expected: Buffer): Promise<void> {
    fillCheckPattern(this.slice, (iter * MAX_THREADS + this.thread + 1) >>> 0, this.word);
    expected.set(this.slice);
    if (!(await this.batchOnce(this.writes))) return;
    this.slice.fill(0);
    if (!(await this.batchOnce(this.reads))) return;
    this.run.integrityChecks++;
    if (this.slice.equals(expected)) return;
    this.run.integrityFailures++;
    const at = firstDifference(this.slice, expected);
    this.run.error(`integrity check failed: thread ${this.thread}, iteration ${iter}: request ${Math.floor(at / this.o.size)}, byte ${at % this.o.size} differs`);
  }

  /** One batch, start to finish. Returns true if every request COMPLETED. */
  private async batchOnce(reqs: TransferRequest[]): Promise<boolean> {
    const run = this.run;
    const t0 = performance.now();
    let id: BatchID | undefined;
    try {
      id = this.engine.allocateBatchID(reqs.length);
      this.engine.submitTransfer(id, reqs);
      const statuses = await this.engine.waitBatch(id);
      run.latency.add((performance.now() - t0) * 1000);
      run.batches++;
      run.requests += reqs.length;
      let ok = true;
      for (let i = 0; i < statuses.length; i++) {
        const s = statuses[i]!;
        if (s.status === TaskStatus.COMPLETED) {
          run.bytes += reqs[i]!.length; // only completed requests count toward throughput
        } else {
          ok = false;
          run.failures++;
          run.error(`transfer failed (${TaskStatus[s.status]}): ${s.error?.message ?? 'no error message'}`);
        }
      }
      return ok;
    } catch (e) {
      // A thrown error (not a task status) would repeat on every batch: stop the run.
      run.requests += reqs.length;
      run.failures += reqs.length;
      run.error(`batch failed: ${errorMessage(e)}`);
      run.stopped = true;
      return false;
    } finally {
      if (id !== undefined) this.engine.freeBatchID(id);
    }
  }
}

/**
 * A cheap pattern that differs per iteration and thread: a native fill with an
 * 8-byte word derived from `seed`, then every 4 KiB page stamped with its index
 * so misplaced pages are caught too.
 */
function fillCheckPattern(buf: Buffer, seed: number, word: Buffer): void {
  word.writeUInt32LE(mix32(seed), 0);
  word.writeUInt32LE(mix32(seed ^ 0x5bd1e995), 4);
  buf.fill(word);
  for (let off = 0, page = 0; off + 8 <= buf.length; off += 4096, page++) {
    buf.writeUInt32LE(page, off);
    buf.writeUInt32LE(seed, off + 4);
  }
}

/** murmur3's finalizer: spreads a counter over all 32 bits. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

interface BenchResult {
  remoteSegment: string;
  elapsedS: number;
  bytes: number;
  batches: number;
  requests: number;
  failures: number;
  integrity: 'passed' | 'failed' | 'off';
  integrityChecks: number;
  integrityFailures: number;
  interrupted: boolean;
  latencyUs: Percentiles;
  error: string | undefined;
}

/** The remote address of this run's memory: buffers[0] of the target, which must be big enough. */
function remoteBase(desc: SegmentDesc, segment: string, o: BenchOptions): bigint {
  const need = BigInt(bufferBytes(o));
  const buf = desc.buffers[0];
  if (!buf) throw new Error(`segment ${segment} publishes no memory buffer`);
  if (buf.length < need) {
    throw new Error(
      `segment ${segment} publishes ${buf.length} bytes but --size x --batch x --threads needs ${need}; ` +
        'start the target with the same --size, --batch and --threads',
    );
  }
  return buf.addr;
}

/** Run the initiator side against `segment` for o.durationS seconds (SIGINT/SIGTERM end it early). */
async function runInitiator(o: BenchOptions, segment: string): Promise<BenchResult> {
  const engine = new TransferEngine({ metadataServer: o.metadataServer });
  await engine.init(o.localSegment);
  const run = new RunState();
  const stop = (): void => {
    run.stopped = true;
    run.interrupted = true;
  };
  try {
    const handle = await engine.openSegment(segment);
    const remote = { handle, base: remoteBase(engine.getSegmentDescriptor(handle), segment, o) };
    const buf = Buffer.alloc(bufferBytes(o));
    const local = { buf, addr: engine.registerLocalMemory(buf, 'cpu:0') };
    const loops = Array.from({ length: o.threads }, (_, t) => new SubmitLoop(engine, run, o, t, local, remote));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (!o.json) process.stdout.write(`Running ${o.workload} against ${segment} for ${o.durationS} s...\n`);
    const t0 = performance.now();
    await Promise.all(loops.map((l) => l.loop(t0 + o.durationS * 1000)));
    return summarize(run, segment, (performance.now() - t0) / 1000, o);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await engine.close();
  }
}

function summarize(run: RunState, segment: string, elapsedS: number, o: BenchOptions): BenchResult {
  let integrity: BenchResult['integrity'] = 'off';
  // No completed round trip proves nothing, so it does not pass.
  if (o.integrityCheck) integrity = run.integrityFailures === 0 && run.integrityChecks > 0 ? 'passed' : 'failed';
  return {
    remoteSegment: segment,
    elapsedS,
    bytes: run.bytes,
    batches: run.batches,
    requests: run.requests,
    failures: run.failures,
    integrity,
    integrityChecks: run.integrityChecks,
    integrityFailures: run.integrityFailures,
    interrupted: run.interrupted,
    latencyUs: run.latency.percentiles(),
    error: run.firstError,
  };
}

// ---------------------------------------------------------------- loopback

const MAIN_JS = fileURLToPath(new URL('./main.js', import.meta.url));
const TARGET_READY_TIMEOUT_MS = 20_000;
const TARGET_STOP_TIMEOUT_MS = 10_000;

interface TargetExit {
  pid: number;
  exitCode: number | null;
  signal: string | null;
  clean: boolean;
}

async function runLoopback(o: BenchOptions): Promise<number> {
  const child = spawn(
    process.execPath,
    [
      MAIN_JS, 'bench', '--mode=target', '--json', `--local_segment=${o.metadataFlags.length > 0 ? `bench-target-${process.pid}` : o.localSegment}`,
      `--size=${o.size}`, `--batch=${o.batch}`, `--threads=${o.threads}`, ...o.metadataFlags,
    ],
    // Own process group: a terminal Ctrl-C stops our run first, then we stop the target.
    // The IPC channel lets the target notice if we die without stopping it.
    { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], detached: true },
  );
  let result: BenchResult;
  let exit: TargetExit;
  try {
    const segment = await targetReady(child);
    result = await runInitiator(o, segment);
  } finally {
    exit = await stopTarget(child);
  }
  return report(o, result, exit);
}

/** Wait for the target's JSON ready line on its stdout; returns its segment name. */
function targetReady(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => fail(new Error(`the target did not get ready within ${TARGET_READY_TIMEOUT_MS / 1000} s`)), TARGET_READY_TIMEOUT_MS);
    const onExit = (code: number | null, signal: string | null): void =>
      fail(new Error(`the target exited before it was ready (${signal ?? `exit code ${code}`})`));
    const fail = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('exit', onExit);
      child.off('error', fail);
      lines.off('line', onLine);
    };
    const onLine = (line: string): void => {
      const segment = readySegment(line);
      if (segment === undefined) return;
      cleanup();
      resolve(segment);
    };
    child.once('exit', onExit);
    child.once('error', fail);
    lines.on('line', onLine);
  });
}

function readySegment(line: string): string | undefined {
  try {
    const v: unknown = JSON.parse(line);
    if (typeof v === 'object' && v !== null && 'segment' in v && typeof v.segment === 'string') return v.segment;
  } catch {
    // not the ready line
  }
  return undefined;
}

/** SIGTERM the target and wait for it; SIGKILL (and report it unclean) if it hangs. */
async function stopTarget(child: ChildProcess): Promise<TargetExit> {
  const pid = child.pid ?? -1;
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) resolve();
    else child.once('exit', () => resolve());
  });
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const killed = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve(true);
    }, TARGET_STOP_TIMEOUT_MS);
  });
  const hung = await Promise.race([exited.then(() => false), killed]);
  await exited;
  clearTimeout(timer);
  const clean = !hung && child.exitCode === 0;
  if (!clean) process.stderr.write(`transfer-engine bench: the target (pid ${pid}) did not exit cleanly (${child.signalCode ?? `exit code ${child.exitCode}`})\n`);
  return { pid, exitCode: child.exitCode, signal: child.signalCode, clean };
}

// ------------------------------------------------------------------ report

function round(x: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(x * f) / f;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Print the result (text, or one JSON line last) and return the exit code. */
function report(o: BenchOptions, r: BenchResult, target: TargetExit | null): number {
  const bytesPerS = r.elapsedS > 0 ? r.bytes / r.elapsedS : 0;
  const throughput = bytesPerS / REPORT_UNITS[o.reportUnit];
  if (o.json) process.stdout.write(`${JSON.stringify(jsonReport(o, r, target, throughput, bytesPerS))}\n`);
  else process.stdout.write(textReport(o, r, target, throughput));
  const failed = r.failures > 0 || r.integrity === 'failed' || (target !== null && !target.clean);
  return failed ? 1 : 0;
}

function jsonReport(o: BenchOptions, r: BenchResult, target: TargetExit | null, throughput: number, bytesPerS: number): object {
  return {
    mode: o.mode,
    workload: o.workload,
    protocol: 'tcp',
    remote_segment: r.remoteSegment,
    size: o.size,
    batch: o.batch,
    threads: o.threads,
    duration_s: round(r.elapsedS, 3),
    bytes: r.bytes,
    throughput_GBps: round(bytesPerS / 1e9, 6),
    throughput: round(throughput, o.precision),
    unit: o.reportUnit,
    batches: r.batches,
    requests: r.requests,
    failures: r.failures,
    integrity: r.integrity,
    integrity_checks: r.integrityChecks,
    integrity_failures: r.integrityFailures,
    interrupted: r.interrupted,
    latency_us: r.latencyUs,
    ...(target ? { target: { pid: target.pid, exit_code: target.exitCode, signal: target.signal, clean: target.clean } } : {}),
    ...(r.error !== undefined ? { error: r.error } : {}),
  };
}

function textReport(o: BenchOptions, r: BenchResult, target: TargetExit | null, throughput: number): string {
  const rate = `${throughput.toFixed(o.precision)} ${o.reportUnit}/s`;
  const integrity = r.integrity === 'off' ? 'off' : `${r.integrity} (${r.integrityChecks} round trips, ${r.integrityFailures} mismatches)`;
  const lat = r.latencyUs;
  const lines = [
    // Mooncake's own summary line first, so existing log scrapers still match.
    `Test ${r.interrupted ? 'interrupted' : 'completed'}: duration ${r.elapsedS.toFixed(2)}, batch count ${r.batches}, throughput ${rate}`,
    `  workload    ${o.workload} over tcp to ${r.remoteSegment}: size ${o.size} B, batch ${o.batch}, threads ${o.threads}`,
    `  throughput  ${rate}`,
    `  transferred ${r.bytes} bytes in ${r.elapsedS.toFixed(3)} s: ${r.batches} batches, ${r.requests} requests, ${r.failures} failed`,
    `  latency     per batch: p50 ${lat.p50} us, p99 ${lat.p99} us, p99.9 ${lat.p999} us`,
    `  integrity   ${integrity}`,
  ];
  if (target) lines.push(`  target      pid ${target.pid} ${target.clean ? 'exited cleanly' : 'did not exit cleanly'}`);
  if (r.error !== undefined) lines.push(`  first error ${r.error}`);
  return `${lines.join('\n')}\n`;
}
