/**
 * Flags of `transfer-engine bench`: the names and defaults of Mooncake's v1
 * bench (doc/en/v1/transfer-engine-bench-v1.md, v1.0-beta branch), Mooncake's
 * classic transfer_engine_bench names as aliases, and their validation into
 * one plain (structured-cloneable) BenchOptions object that worker threads get too.
 */
import { constants as bufferConstants } from 'node:buffer';
import os from 'node:os';
import { metadataConnString, parseMetadataConnString, METADATA_TYPES, P2PHANDSHAKE } from '../../metadata/connection.js';
import { TransferEngineError } from '../../errors.js';
import { envVar } from '../../env.js';
import { formatFlagHelp, UsageError, type FlagSpecs, type ParsedFlags, type ParseResult } from '../args.js';

export const WORKLOADS = ['read', 'write', 'mix'] as const;
export type Workload = (typeof WORKLOADS)[number];

/** Bytes per report unit; the lower-case-b units are bits (Mooncake's RATE_UNIT_MP). */
export const REPORT_UNITS = { GB: 1e9, GiB: 2 ** 30, Gb: 1e9 / 8, MB: 1e6, MiB: 2 ** 20, Mb: 1e6 / 8, KB: 1e3, KiB: 2 ** 10, Kb: 1e3 / 8 } as const;
export type ReportUnit = keyof typeof REPORT_UNITS;
const UNIT_NAMES = ['GB', 'GiB', 'Gb', 'MB', 'MiB', 'Mb', 'KB', 'KiB', 'Kb'] as const satisfies readonly ReportUnit[];

export const MAX_THREADS = 256;
const MAX_PRECISION = 12;

/** Transports Mooncake's --protocol names that need hardware this host does not have. */
const OTHER_PROTOCOLS = ['rdma', 'barex', 'efa', 'nvlink', 'musa', 'nvlink_intra', 'hip', 'sunrise_link', 'ub', 'ubshmem', 'cxi'];

export const BENCH_FLAGS = {
  mode: {
    type: 'string',
    choices: ['target', 'initiator'],
    description: 'target serves memory; initiator drives transfers against --remote_segment',
    defaultText: 'initiator if --remote_segment is given, else target',
  },
  loopback: { type: 'boolean', description: 'run a target in a child process and the initiator here, on 127.0.0.1' },
  remote_segment: { type: 'string', description: 'segment name printed by the target (P2P: host:port)', aliases: ['segment_id'] },
  local_segment: {
    type: 'string',
    description: "this engine's name; in P2P mode only its host part is used",
    defaultText: 'host name for a target, 127.0.0.1 otherwise',
    aliases: ['local_server_name'],
  },
  workload: {
    type: 'string',
    choices: WORKLOADS,
    description: 'request type; mix alternates write and read batches',
    defaultText: 'read (mix with --loopback)',
    aliases: ['operation'],
  },
  duration: { type: 'number', description: 'seconds to run', defaultText: '10 (5 with --loopback)' },
  give_up_after: {
    type: 'number',
    description: 'stop early once requests have failed in a row for this many seconds, none completing (the target is gone); 0: never',
    defaultText: '5',
  },
  size: { type: 'size', description: 'bytes per request; suffixes K/M/G (1024) or KB/MB/GB (1000)', defaultText: '65536', aliases: ['block_size'] },
  batch: { type: 'integer', description: 'requests per batch', defaultText: '16', aliases: ['batch_size'] },
  threads: {
    type: 'integer',
    description: 'submitting threads: more than 1 runs worker threads, each with its own engine and memory',
    defaultText: '4',
  },
  integrity_check: {
    type: 'boolean',
    description: 'mix only: write a fresh pattern, read it back, compare',
    defaultText: 'true with --loopback --workload=mix, else false',
  },
  shmfs: {
    type: 'boolean',
    description: 'allocate the memory of every engine in POSIX shared memory (/dev/shm); same-host peers then copy directly',
  },
  tls: {
    type: 'boolean',
    description: 'mutual TLS 1.3 on every connection: TE_TLS_CERT, TE_TLS_KEY, TE_TLS_CA (with --loopback and none set: throwaway certificates)',
  },
  report_unit: { type: 'string', choices: UNIT_NAMES, description: 'throughput unit (b = bits)', defaultText: 'GB' },
  report_precision: { type: 'integer', description: 'decimals in the throughput report', defaultText: '2' },
  json: { type: 'boolean', description: 'print one JSON object as the last stdout line (target: a ready line)' },
  csv: { type: 'boolean', description: "print the result as CSV: a header line, then one row (our columns, then nixlbench's)" },
  metadata_type: { type: 'string', choices: METADATA_TYPES, description: 'where segments are published and looked up', defaultText: 'p2p' },
  metadata_servers: {
    type: 'string',
    description: 'required unless p2p: http HOST:PORT/metadata (or a URL), etcd H1:2379,H2:2379, redis HOST[:PORT]',
  },
  metadata_server: {
    type: 'string',
    description: "Mooncake's connection string instead of the two flags above: P2PHANDSHAKE, http://..., etcd://..., redis://..., or HOST:PORT (etcd)",
  },
  protocol: { type: 'string', description: 'transport; only tcp runs on this host (Mooncake: rdma, tcp, ...)', defaultText: 'tcp' },
  buffer_size: {
    type: 'size',
    description: 'target: bytes per published buffer (one buffer per NUMA node), raised to size x batch x threads',
    defaultText: 'size x batch x threads',
  },
} as const satisfies FlagSpecs;

export type BenchFlags = ParsedFlags<typeof BENCH_FLAGS>;
export type BenchParse = ParseResult<typeof BENCH_FLAGS>;

export const BENCH_HELP = `Usage: transfer-engine bench [flags]

Measure batched transfers between engines over TCP (P2P handshake, or a
metadata service with --metadata_type and --metadata_servers). Flag names
follow Mooncake's transfer_engine_bench (v1); its classic names work as aliases.

  transfer-engine bench --loopback                      both sides on this host
  transfer-engine bench --mode=target                   serve; prints the initiator command
  transfer-engine bench --remote_segment=HOST:PORT      run the initiator against a target
  transfer-engine bench --metadata_type=etcd --metadata_servers=H:2379 --local_segment=NAME
                                                        a target published in etcd (initiator: --remote_segment=NAME)
  transfer-engine bench --file_mode --help              file segments (--files, --file_mode): their own flags

The initiator reports throughput, and latency percentiles (p50, p99, p99.9)
per batch and per request (each request of a sampled batch is timed from the
batch's submission: every batch for requests of 256 KiB and more, one in 4 at
64 KiB, one in 64 at 4 KiB). On a terminal it shows live progress; with --json
the last stdout line is the result as JSON (lines before it are events:
target_ready with the --loopback target's pid, run_started).

A lost target ends the run early instead of letting it fail to the end: with
--loopback as soon as the target process exits ("the target died: the target
process (pid N) exited with signal SIGKILL"); otherwise once requests have
failed in a row for --give_up_after seconds with none completing ("the target
is gone or unreachable: ..."). The report says why it stopped (JSON:
stop_reason duration, signal, target_lost or all_failed, and stop_message).

Integrity (--integrity_check) is "passed" only if round trips ran, every one
read back what it wrote, no request failed and the run was not cut short by
its target; "failed" if bytes came back wrong; "incomplete" otherwise (a
failed request leaves its round trip unchecked).

Flags:
${formatFlagHelp(BENCH_FLAGS)}

Exit status: 0 on success; 1 if any transfer failed, integrity is not passed
(failed or incomplete), the run stopped early for a lost target, or the
--loopback target did not exit cleanly; 2 on a usage error.
`;

export type BenchMode = 'loopback' | 'target' | 'initiator';

/** Everything a run needs; plain data, so it can be posted to worker threads. */
export interface BenchOptions {
  mode: BenchMode;
  remoteSegment: string;
  localSegment: string;
  workload: Workload;
  durationS: number;
  /** Stop once requests have failed in a row (none completing, across threads) for this long; 0: never. */
  giveUpAfterS: number;
  size: number;
  batch: number;
  threads: number;
  integrityCheck: boolean;
  shmfs: boolean;
  /** --tls, or TE_TLS_CERT set: every connection is mutual TLS (src/tls.ts). */
  tls: boolean;
  reportUnit: ReportUnit;
  precision: number;
  json: boolean;
  /** Initiator: the result as CSV instead of text. */
  csv: boolean;
  /** Connection string: P2PHANDSHAKE, http://..., etcd://..., redis://... */
  metadataServer: string;
  /** The metadata flags as given, passed on to a --loopback target and shown in the initiator command. */
  metadataFlags: string[];
  /** Target: bytes per published buffer. */
  bufferBytes: number;
}

function label(p: BenchParse, name: keyof typeof BENCH_FLAGS): string {
  return `--${p.written[name] ?? name}`;
}

function pickMode(p: BenchParse): BenchMode {
  const f = p.flags;
  if (f.loopback) {
    if (f.mode !== undefined) throw new UsageError('--loopback runs both sides; do not combine it with --mode');
    if (f.remote_segment !== undefined) throw new UsageError(`--loopback starts its own target; do not combine it with ${label(p, 'remote_segment')}`);
    return 'loopback';
  }
  const mode = f.mode ?? (f.remote_segment !== undefined ? 'initiator' : 'target');
  if (mode === 'initiator' && !f.remote_segment) {
    throw new UsageError('--mode=initiator needs --remote_segment=HOST:PORT (the name printed by the target)');
  }
  if (mode === 'target' && f.remote_segment !== undefined) throw new UsageError(`${label(p, 'remote_segment')} is for the initiator, not --mode=target`);
  return mode === 'target' ? 'target' : 'initiator';
}

function positiveInt(p: BenchParse, name: 'size' | 'batch' | 'threads', dflt: number, max: number): number {
  const x = p.flags[name] ?? dflt;
  if (x < 1) throw new UsageError(`${label(p, name)}=${x}: must be at least 1`);
  if (x > max) throw new UsageError(`${label(p, name)}=${x}: must be at most ${max}`);
  return x;
}

function isReportUnit(u: string): u is ReportUnit {
  return Object.hasOwn(REPORT_UNITS, u);
}

function isWorkload(w: string): w is Workload {
  return (WORKLOADS as readonly string[]).includes(w);
}

/**
 * The metadata service: --metadata_type/--metadata_servers (the v1 bench, as
 * Mooncake's initializeExt combines them) or the classic --metadata_server
 * connection string; not both.
 */
function resolveMetadata(p: BenchParse): { conn: string; flags: string[] } {
  const f = p.flags;
  if (f.metadata_server !== undefined) {
    if (f.metadata_type !== undefined || f.metadata_servers !== undefined) {
      throw new UsageError('give either --metadata_server or --metadata_type with --metadata_servers, not both');
    }
    const conn = f.metadata_server.trim();
    try {
      const target = parseMetadataConnString(conn);
      return { conn: target.type === 'p2p' ? P2PHANDSHAKE : conn, flags: target.type === 'p2p' ? [] : [`--metadata_server=${conn}`] };
    } catch (e) {
      if (e instanceof TransferEngineError) throw new UsageError(`--metadata_server=${f.metadata_server}: ${e.message}`);
      throw e;
    }
  }
  const type = f.metadata_type ?? 'p2p';
  const servers = f.metadata_servers;
  if (type === 'p2p') {
    if (servers !== undefined) throw new UsageError('--metadata_servers needs --metadata_type=http, etcd or redis');
    return { conn: P2PHANDSHAKE, flags: [] };
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

function checkProtocol(p: BenchParse): void {
  const proto = p.flags.protocol;
  if (proto === undefined || proto === 'tcp') return;
  if (OTHER_PROTOCOLS.includes(proto)) {
    throw new UsageError(`--protocol=${proto}: not available on this host (no RDMA devices or GPUs); use --protocol=tcp`);
  }
  throw new UsageError(`--protocol=${proto}: unknown transport (only tcp runs here)`);
}

/** Validate flags and apply the mode's defaults. */
export function resolveOptions(p: BenchParse, env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const f = p.flags;
  checkProtocol(p);
  const mode = pickMode(p);
  const metadata = resolveMetadata(p);
  const central = metadata.conn !== P2PHANDSHAKE;
  const loopback = mode === 'loopback';
  const workload = f.workload ?? (loopback ? 'mix' : 'read');
  const unit = f.report_unit ?? 'GB';
  if (!isWorkload(workload)) throw new UsageError(`${label(p, 'workload')}=${workload}: expected read, write or mix`);
  if (!isReportUnit(unit)) throw new UsageError(`--report_unit=${unit}: expected one of ${UNIT_NAMES.join(', ')}`);
  const durationS = f.duration ?? (loopback ? 5 : 10);
  if (!(durationS > 0)) throw new UsageError(`--duration=${durationS}: must be more than 0 seconds`);
  if (durationS > 7 * 86400) throw new UsageError(`--duration=${durationS}: must be at most a week`);
  const giveUpAfterS = f.give_up_after ?? 5;
  if (!(giveUpAfterS >= 0)) throw new UsageError(`--give_up_after=${giveUpAfterS}: must be 0 (never) or more seconds`);
  const precision = f.report_precision ?? 2;
  if (precision < 0 || precision > MAX_PRECISION) throw new UsageError(`--report_precision=${precision}: must be between 0 and ${MAX_PRECISION}`);
  if (f.csv && f.json) throw new UsageError('--csv and --json each replace the text report: give one');
  if (f.csv && mode === 'target') throw new UsageError('--csv is for the initiator (and --loopback): a target prints no result');
  const integrityCheck = f.integrity_check ?? (loopback && workload === 'mix');
  if (integrityCheck && workload !== 'mix') {
    throw new UsageError(`--integrity_check needs --workload=mix (it writes, reads back and compares), not ${workload}`);
  }
  // TLS comes from TE_TLS_* (the engines read them); --tls asks for it, and only a loopback run can make throwaway certificates.
  const tlsFromEnv = envVar('TE_TLS_CERT', env) !== undefined;
  if (f.tls && !loopback && !tlsFromEnv) {
    throw new UsageError('--tls needs TE_TLS_CERT, TE_TLS_KEY and TE_TLS_CA (certificates of one CA on both hosts); only --loopback makes throwaway ones');
  }
  const size = positiveInt(p, 'size', 65536, bufferConstants.MAX_LENGTH);
  const batch = positiveInt(p, 'batch', 16, 1 << 20);
  const threads = positiveInt(p, 'threads', 4, MAX_THREADS);
  const need = size * batch * threads;
  if (size * batch > bufferConstants.MAX_LENGTH || !Number.isSafeInteger(need)) {
    throw new UsageError(`${label(p, 'size')} x ${label(p, 'batch')} = ${size * batch} bytes per thread, more than one buffer can hold (${bufferConstants.MAX_LENGTH})`);
  }
  if (f.buffer_size !== undefined && f.buffer_size < 1) throw new UsageError(`${label(p, 'buffer_size')}=${f.buffer_size}: must be at least 1`);
  const bufferBytes = Math.max(f.buffer_size ?? 0, need);
  if (bufferBytes > bufferConstants.MAX_LENGTH) {
    throw new UsageError(`buffers of ${bufferBytes} bytes (size x batch x threads, or --buffer_size) are more than one buffer can hold (${bufferConstants.MAX_LENGTH})`);
  }
  return {
    mode,
    remoteSegment: f.remote_segment ?? '',
    // Only a target's name must be dialable from elsewhere; the initiator's is never dialed.
    // In central modes names are keys: each initiator gets its own.
    localSegment: f.local_segment ?? (mode === 'target' ? os.hostname() : central ? `bench-initiator-${os.hostname()}-${process.pid}` : '127.0.0.1'),
    workload,
    durationS,
    giveUpAfterS,
    size,
    batch,
    threads,
    integrityCheck,
    shmfs: f.shmfs ?? false,
    tls: (f.tls ?? false) || tlsFromEnv,
    reportUnit: unit,
    precision,
    json: f.json ?? false,
    csv: f.csv ?? false,
    metadataServer: metadata.conn,
    metadataFlags: metadata.flags,
    bufferBytes,
  };
}
