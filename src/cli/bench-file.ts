/**
 * `transfer-engine bench` file modes, after the
 * transfer_engine_nvmeof_generic_bench of Mooncake's generic NVMe-oF
 * transport (Mooncake PR #793; same flag names and defaults):
 *
 *   --mode=target --files="/path/f0 /path/f1"   register the files, serve until SIGINT/SIGTERM
 *   --file_mode --segment_id=NAME               initiator: random block-sized READs or WRITEs
 *                                                 of the target's files for --duration seconds
 *   --mode=loopback --files="..."               both: the target in a child process, the
 *                                                 initiator here, over 127.0.0.1
 *
 * With --trtype/--traddr/--trsvcid the target serves its files on that
 * address (the nvmeof_generic transport's own listener); the wire is this
 * engine's TCP protocol, not NVMe/TCP. Each initiator "thread" is a submit
 * loop on this event loop, all sharing one engine, as Mooncake's threads do.
 * A write run overwrites the target files.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { TaskStatus, TransferEngine, TransferOpcode, type FileBufferDesc, type TransferRequest } from '../core.js';
import { formatFlagHelp, parseFlags, UsageError, type FlagSpecs, type ParsedFlags } from './args.js';
import { loopbackTargetEnv, stopRequested } from './bench/target.js';
import { fileCapacity, DIRECT_IO_ALIGN } from '../file/registry.js';
import { loadFileConfig } from '../file/config.js';
import { TransferEngineError } from '../errors.js';

const REPORT_UNITS = { GB: 1e9, GiB: 2 ** 30, Gb: 1e9 / 8, MB: 1e6, MiB: 2 ** 20, Mb: 1e6 / 8, KB: 1e3, KiB: 2 ** 10, Kb: 1e3 / 8 } as const;
type ReportUnit = keyof typeof REPORT_UNITS;
const UNIT_NAMES = Object.keys(REPORT_UNITS) as ReportUnit[];

export const FILE_BENCH_FLAGS = {
  mode: { type: 'string', choices: ['target', 'initiator', 'loopback'], description: 'target serves --files; initiator reads/writes them; loopback runs both', defaultText: 'target with --files, else initiator' },
  file_mode: { type: 'boolean', description: 'select the file bench for an initiator (a target or loopback is selected by --files)' },
  files: { type: 'string', description: 'target/loopback: files to register, separated by spaces (regular files, or block devices with --allow_block_device)' },
  segment_id: { type: 'string', description: 'initiator: the target segment name (P2P: host:port, printed by the target)' },
  local_server_name: { type: 'string', description: "this engine's name; in P2P mode only its host part is used", defaultText: 'host name for a target, 127.0.0.1 otherwise' },
  metadata_server: { type: 'string', description: 'P2PHANDSHAKE, http://host:port/metadata, etcd://host:port, redis://host:port', defaultText: 'P2PHANDSHAKE' },
  operation: { type: 'string', choices: ['read', 'write'], description: 'initiator: READ from or WRITE to the files (write overwrites them)', defaultText: 'read' },
  block_size: { type: 'size', description: 'bytes per request (a multiple of 4096 with direct I/O)', defaultText: '65536' },
  batch_size: { type: 'integer', description: 'requests per batch', defaultText: '4096' },
  duration: { type: 'number', description: 'seconds to run', defaultText: '30' },
  threads: { type: 'integer', description: 'concurrent submit loops (each with its own memory and file blocks)', defaultText: '1' },
  trtype: { type: 'string', description: 'target: with --traddr/--trsvcid, serve files on a listener of their own; only tcp', defaultText: 'tcp' },
  adrfam: { type: 'string', choices: ['ipv4', 'ipv6'], description: 'target: address family of --traddr', defaultText: 'from --traddr' },
  traddr: { type: 'string', description: 'target: listen address for file requests', defaultText: 'the tcp data port (no own listener)' },
  trsvcid: { type: 'string', description: 'target: listen port for file requests' },
  direct_io: { type: 'boolean', description: 'target: open the files with O_DIRECT (aligned requests only)', defaultText: 'MC_NVMEOF_GENERIC_DIRECT_IO' },
  allow_block_device: { type: 'boolean', description: 'target: allow block devices in --files (writing destroys their data)' },
  report_unit: { type: 'string', choices: UNIT_NAMES, description: 'throughput unit (b = bits)', defaultText: 'GB' },
  report_precision: { type: 'integer', description: 'decimals in the throughput report', defaultText: '2' },
  json: { type: 'boolean', description: 'print one JSON object as the last stdout line (target: a ready line)' },
} as const satisfies FlagSpecs;

type Flags = ParsedFlags<typeof FILE_BENCH_FLAGS>;

export const FILE_BENCH_HELP = `Usage: transfer-engine bench --files=... | --file_mode [flags]

File segments (after Mooncake's transfer_engine_nvmeof_generic_bench): a target
registers files, an initiator reads or writes random blocks of them.

  transfer-engine bench --mode=target --files="/data/f0 /data/f1"
  transfer-engine bench --file_mode --segment_id=HOST:PORT --operation=read
  transfer-engine bench --mode=loopback --files=/data/f0 --duration=5

The wire is this engine's own TCP protocol, not NVMe/TCP.

Flags:
${formatFlagHelp(FILE_BENCH_FLAGS)}

Exit status: 0 on success, 1 if any transfer failed, 2 on a usage error.
`;

/** Does this bench argv ask for the file modes? (The hook in bench.ts.) */
export function isFileBench(argv: readonly string[]): boolean {
  return argv.some((a) => /^--(files|file[_-]mode)(=|$)/.test(a));
}

interface Options {
  mode: 'target' | 'initiator' | 'loopback';
  files: string[];
  segment: string;
  localName: string;
  metadataServer: string;
  write: boolean;
  block: number;
  batch: number;
  durationS: number;
  threads: number;
  trid: string | undefined;
  directIO: boolean;
  allowBlockDevice: boolean;
  unit: ReportUnit;
  precision: number;
  json: boolean;
  /** Target flags passed on to a loopback's child. */
  targetFlags: string[];
}

function positive(name: string, v: number | undefined, dflt: number, max = Number.MAX_SAFE_INTEGER): number {
  const x = v ?? dflt;
  if (!Number.isSafeInteger(x) || x < 1 || x > max) throw new UsageError(`--${name}=${x}: must be an integer in [1, ${max}]`);
  return x;
}

export function resolveFileOptions(f: Flags): Options {
  const files = (f.files ?? '').split(/\s+/).filter((s) => s.length > 0);
  const mode = (f.mode ?? (f.files !== undefined ? 'target' : 'initiator')) as Options['mode']; // parseFlags checked the choices
  if (mode !== 'initiator' && files.length === 0) throw new UsageError(`--mode=${mode} needs --files="/path/a /path/b"`);
  if (mode === 'initiator' && f.files !== undefined) throw new UsageError('--files is for the target (or --mode=loopback); the initiator uses the target\'s files');
  if (mode === 'initiator' && !f.segment_id) throw new UsageError('the initiator needs --segment_id=NAME (the segment printed by the target)');
  if (mode !== 'initiator' && f.segment_id !== undefined) throw new UsageError(`--segment_id is for the initiator, not --mode=${mode}`);
  const durationS = f.duration ?? 30;
  if (!(durationS > 0)) throw new UsageError(`--duration=${durationS}: must be more than 0 seconds`);
  const precision = f.report_precision ?? 2;
  if (precision < 0 || precision > 12) throw new UsageError(`--report_precision=${precision}: must be between 0 and 12`);
  let trid: string | undefined;
  if (f.traddr !== undefined || f.trsvcid !== undefined) {
    if (f.traddr === undefined || f.trsvcid === undefined) throw new UsageError('--traddr and --trsvcid go together');
    trid = `trtype=${f.trtype ?? 'tcp'}${f.adrfam ? ` adrfam=${f.adrfam}` : ''} traddr=${f.traddr} trsvcid=${f.trsvcid}`;
  } else if (f.trtype !== undefined && f.trtype !== 'tcp') {
    throw new UsageError(`--trtype=${f.trtype}: only tcp (files are served over this engine's TCP protocol)`);
  }
  let directIO: boolean;
  try {
    directIO = f.direct_io ?? loadFileConfig().directIO; // all of MC_NVMEOF_GENERIC_* checked, as a usage error
  } catch (e) {
    if (e instanceof TransferEngineError) throw new UsageError(e.message);
    throw e;
  }
  const block = positive('block_size', f.block_size, 65536);
  const batch = positive('batch_size', f.batch_size, 4096);
  const threads = positive('threads', f.threads, 1, 1024);
  if (block * batch * threads > 2 ** 32) throw new UsageError(`--block_size x --batch_size x --threads = ${block * batch * threads} bytes of memory is too much`);
  const targetFlags = [
    ...(trid !== undefined ? [`--trtype=${f.trtype ?? 'tcp'}`, `--traddr=${f.traddr}`, `--trsvcid=${f.trsvcid}`, ...(f.adrfam ? [`--adrfam=${f.adrfam}`] : [])] : []),
    ...(f.direct_io !== undefined ? [`--direct_io=${f.direct_io}`] : []),
    ...(f.allow_block_device ? ['--allow_block_device'] : []),
    ...(f.metadata_server !== undefined ? [`--metadata_server=${f.metadata_server}`] : []),
  ];
  return {
    mode,
    files,
    segment: f.segment_id ?? '',
    localName: f.local_server_name ?? (mode === 'target' ? os.hostname() : '127.0.0.1'),
    metadataServer: f.metadata_server ?? 'P2PHANDSHAKE',
    write: (f.operation ?? 'read') === 'write',
    block,
    batch,
    durationS,
    threads,
    trid,
    directIO,
    allowBlockDevice: f.allow_block_device ?? false,
    unit: (f.report_unit ?? 'GB') as ReportUnit,
    precision,
    json: f.json ?? false,
    targetFlags,
  };
}

export async function runFileBench(argv: readonly string[]): Promise<number> {
  const parsed = parseFlags(argv, FILE_BENCH_FLAGS);
  if (parsed.help) {
    process.stdout.write(FILE_BENCH_HELP);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument "${parsed.positionals[0]}"`);
  const o = resolveFileOptions(parsed.flags);
  switch (o.mode) {
    case 'target':
      return runTarget(o);
    case 'initiator':
      return report(o, await runInitiator(o, o.segment));
    case 'loopback':
      return runLoopback(o);
  }
}

// ------------------------------------------------------------------ target

async function runTarget(o: Options): Promise<number> {
  const engine = new TransferEngine({ metadataServer: o.metadataServer });
  await engine.init(o.localName);
  try {
    if (o.trid !== undefined) await engine.installTransport('nvmeof_generic', o.trid);
    const registered: Array<{ id: number; path: string; size: number }> = [];
    for (const path of o.files) {
      let size = fileCapacity(path);
      if (o.directIO) size -= size % DIRECT_IO_ALIGN; // direct I/O reaches whole blocks only
      if (size <= 0) throw new UsageError(`--files: "${path}" is empty${o.directIO ? ' or smaller than one 4096-byte block' : ''}; create it with the size to serve first`);
      const id = engine.registerLocalFile(path, size, { directIO: o.directIO, allowBlockDevice: o.allowBlockDevice });
      registered.push({ id, path, size });
    }
    await engine.flushMetadata();
    const segment = engine.segmentName;
    const command = `transfer-engine bench --file_mode --segment_id=${segment}${o.metadataServer !== 'P2PHANDSHAKE' ? ` --metadata_server=${o.metadataServer}` : ''} --operation=read`;
    if (o.json) process.stdout.write(`${JSON.stringify({ event: 'target_ready', segment, pid: process.pid, files: registered, initiator_command: command })}\n`);
    else {
      const list = registered.map((f) => `  id ${f.id}: ${f.path} (${f.size} bytes)`).join('\n');
      process.stdout.write(`Target ready: segment ${segment} serves ${registered.length} file(s):\n${list}\nStart an initiator with:\n  ${command}\nStop with Ctrl-C or SIGTERM.\n`);
    }
    await stopRequested();
  } finally {
    await engine.close();
  }
  if (!o.json) process.stdout.write('Target stopped.\n');
  return 0;
}

// --------------------------------------------------------------- initiator

interface Result {
  segment: string;
  elapsedS: number;
  bytes: number;
  batches: number;
  failures: number;
  interrupted: boolean;
  firstError: string | undefined;
  /** Requests served by same-host access (the target is on this host) instead of over TCP; TE_FILE_SAME_HOST=0 forces TCP. */
  sameHostRequests: number;
}

/** transfer_engine_nvmeof_generic_bench's placement: thread t uses block slots t, t+threads, ... of a random file, at random. */
function pickBlock(files: FileBufferDesc[], o: Options, thread: number): { fileId: number; offset: number } {
  const f = files[Math.floor(Math.random() * files.length)]!;
  const units = Math.floor(f.size / o.block / o.threads);
  return { fileId: f.id, offset: o.block * (Math.floor(Math.random() * units) * o.threads + thread) };
}

async function runInitiator(o: Options, segment: string): Promise<Result> {
  const engine = new TransferEngine({ metadataServer: o.metadataServer });
  await engine.init(o.localName);
  const res: Result = { segment, elapsedS: 0, bytes: 0, batches: 0, failures: 0, interrupted: false, firstError: undefined, sameHostRequests: 0 };
  let stopped = false;
  const stop = (): void => {
    stopped = true;
    res.interrupted = true;
  };
  try {
    const handle = await engine.openSegment(segment);
    const files = engine.getSegmentDescriptor(handle).fileBuffers ?? [];
    if (files.length === 0) throw new Error(`segment ${segment} serves no files (start it with --mode=target --files=...)`);
    for (const f of files) {
      if (f.align > 1 && o.block % f.align !== 0) throw new UsageError(`--block_size=${o.block}: file id ${f.id} uses direct I/O, so it must be a multiple of ${f.align}`);
      if (Math.floor(f.size / o.block / o.threads) < 1) throw new UsageError(`file id ${f.id} (${f.size} bytes) is smaller than --block_size x --threads`);
    }
    const mem = Buffer.alloc(o.block * o.batch * o.threads);
    const base = engine.registerLocalMemory(mem, 'cpu:0');
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (!o.json) process.stdout.write(`Running ${o.write ? 'write' : 'read'} of ${files.length} file(s) of ${segment} for ${o.durationS} s...\n`);
    const t0 = performance.now();
    const deadline = t0 + o.durationS * 1000;
    const loop = async (thread: number): Promise<void> => {
      // Built once and refilled: submitTransfer reads the fields at once, so the objects can be reused.
      const reqs: TransferRequest[] = Array.from({ length: o.batch }, (_, i) => ({
        opcode: o.write ? TransferOpcode.WRITE : TransferOpcode.READ,
        source: base + o.block * (i * o.threads + thread),
        targetId: handle,
        targetOffset: 0,
        length: o.block,
        fileId: 0,
      }));
      while (!stopped && performance.now() < deadline) {
        for (const r of reqs) {
          const b = pickBlock(files, o, thread);
          r.fileId = b.fileId;
          r.targetOffset = b.offset;
        }
        const bid = engine.allocateBatchID(o.batch);
        try {
          engine.submitTransfer(bid, reqs);
          const st = await engine.waitBatch(bid);
          res.batches++;
          for (const s of st) {
            if (s.status === TaskStatus.COMPLETED) res.bytes += o.block;
            else {
              res.failures++;
              res.firstError ??= s.error?.message ?? TaskStatus[s.status];
            }
          }
        } catch (e) {
          res.failures += o.batch;
          res.firstError ??= e instanceof Error ? e.message : String(e);
          stopped = true;
        } finally {
          engine.freeBatchID(bid);
        }
      }
    };
    await Promise.all(Array.from({ length: o.threads }, (_, t) => loop(t)));
    res.elapsedS = (performance.now() - t0) / 1000;
    res.sameHostRequests = engine.stats().fileSameHost;
    return res;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await engine.close();
  }
}

// ---------------------------------------------------------------- loopback

const MAIN_JS = fileURLToPath(new URL('./main.js', import.meta.url));

async function runLoopback(o: Options): Promise<number> {
  const child = spawn(
    process.execPath,
    [MAIN_JS, 'bench', '--mode=target', '--json', `--local_server_name=127.0.0.1`, `--files=${o.files.join(' ')}`, ...o.targetFlags],
    // TE_METRICS_PORT is the initiator's: the target does not serve metrics.
    { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], detached: true, env: loopbackTargetEnv() },
  );
  try {
    const segment = await targetReady(child);
    return report(o, await runInitiator(o, segment));
  } finally {
    await stopChild(child);
  }
}

function targetReady(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => finish(new Error('the target did not get ready within 20 s')), 20_000);
    const onExit = (code: number | null, signal: string | null): void => finish(new Error(`the target exited before it was ready (${signal ?? `exit code ${code}`})`));
    const finish = (e: Error | null, segment?: string): void => {
      clearTimeout(timer);
      child.off('exit', onExit);
      lines.removeAllListeners('line');
      if (e) reject(e);
      else resolve(segment!);
    };
    child.once('exit', onExit);
    lines.on('line', (line) => {
      try {
        const v: unknown = JSON.parse(line);
        if (typeof v === 'object' && v !== null && 'segment' in v && typeof v.segment === 'string') finish(null, v.segment);
      } catch {
        /* not the ready line */
      }
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

// ------------------------------------------------------------------ report

function report(o: Options, r: Result): number {
  const bytesPerS = r.elapsedS > 0 ? r.bytes / r.elapsedS : 0;
  const rate = bytesPerS / REPORT_UNITS[o.unit];
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({
        mode: o.mode,
        operation: o.write ? 'write' : 'read',
        segment: r.segment,
        block_size: o.block,
        batch_size: o.batch,
        threads: o.threads,
        duration_s: Math.round(r.elapsedS * 1000) / 1000,
        batches: r.batches,
        bytes: r.bytes,
        throughput_GBps: Math.round((bytesPerS / 1e9) * 1e6) / 1e6,
        throughput: Number(rate.toFixed(o.precision)),
        unit: o.unit,
        failures: r.failures,
        interrupted: r.interrupted,
        path: r.sameHostRequests > 0 ? 'same_host' : 'tcp',
        ...(r.firstError !== undefined ? { error: r.firstError } : {}),
      })}\n`,
    );
  } else {
    // Mooncake's summary line, so log scrapers match.
    process.stdout.write(
      `Test ${r.interrupted ? 'interrupted' : 'completed'}: duration ${r.elapsedS.toFixed(2)}, batch count ${r.batches}, throughput ${rate.toFixed(o.precision)} ${o.unit}/s\n` +
        `  path: ${r.sameHostRequests > 0 ? 'same-host file access (TE_FILE_SAME_HOST=0 for TCP)' : 'TCP'}\n` +
        (r.failures > 0 ? `  ${r.failures} request(s) failed; first error: ${r.firstError ?? 'unknown'}\n` : ''),
    );
  }
  return r.failures > 0 ? 1 : 0;
}
