/**
 * Flags of `transfer-engine store-bench`: the flags of Mooncake's
 * mooncake-store/tests/stress_cluster_benchmark.py (same names, same
 * defaults, except --protocol: tcp), plus --json, --verify; validated into
 * one StoreBenchOptions.
 */
import { constants as bufferConstants } from 'node:buffer';
import { parseMetadataConnString } from '../../metadata/connection.js';
import { TransferEngineError } from '../../errors.js';
import { splitHostPort } from '../../net.js';
import { formatFlagHelp, UsageError, type FlagSpecs, type ParseResult } from '../args.js';

export const ROLES = ['prefill', 'decode'] as const;
export type Role = (typeof ROLES)[number];

export const MiB = 1024 * 1024;
export const MAX_WORKERS = 256;

/** Protocols Mooncake's store takes that need hardware this host does not have. */
const HARDWARE_PROTOCOLS = ['rdma', 'barex', 'efa', 'nvlink', 'nvlink_intra', 'musa', 'hip', 'sunrise_link', 'ub', 'ubshmem', 'cxi', 'ascend', 'hccs'];

/**
 * The parser takes `--max-requests` and `--max_requests` alike; the specs are
 * written with `_` (its canonical form), help and messages show Mooncake's `-`.
 */
export const STORE_BENCH_FLAGS = {
  role: { type: 'string', choices: ROLES, description: 'prefill puts the values (batch_put_from), decode gets them (batch_get_into); required' },
  protocol: { type: 'string', description: 'transport; only tcp runs on this host (Mooncake default: rdma)', defaultText: 'tcp' },
  device_name: { type: 'string', description: 'RDMA device names (passed to setup; unused by tcp)', defaultText: 'erdma_0' },
  local_hostname: { type: 'string', description: "this client's host; each store adds a free port (12300-14300) unless given host:port", defaultText: 'localhost' },
  metadata_server: { type: 'string', description: 'metadata server: http://HOST:PORT/metadata (the master\'s embedded one), etcd, redis, P2PHANDSHAKE', defaultText: 'http://127.0.0.1:8080/metadata' },
  master_server: { type: 'string', description: "mooncake_master's HOST:PORT", defaultText: 'localhost:50051' },
  global_segment_size: { type: 'integer', description: 'MB of memory each store mounts for replicas (anyone\'s); 0: none', defaultText: '10000' },
  local_buffer_size: { type: 'integer', description: "MB of each store's local buffer (unused by the zero-copy calls)", defaultText: '512' },
  max_requests: { type: 'integer', description: 'keys to put or get, in all (split over the workers)', defaultText: '1200' },
  value_length: { type: 'integer', description: 'bytes per value', defaultText: '4194304 (4 MiB)' },
  batch_size: { type: 'integer', description: 'keys per batch call', defaultText: '1' },
  wait_time: { type: 'number', description: 'seconds to wait after the operations, stores still open (a prefill keeps its segment, and the values in it, readable)', defaultText: '20' },
  num_workers: { type: 'integer', description: 'workers, each with its own store and buffer (concurrent async loops in this process)', defaultText: '1' },
  detailed_stats: { type: 'boolean', description: 'also report each worker (with --num-workers > 1)' },
  json: { type: 'boolean', description: 'stdout: JSON lines only, events then the result last (the text report goes to stderr)' },
  verify: { type: 'boolean', description: 'decode: check every byte read (value N%256 under key{N}) and that each value is --value-length bytes' },
  files: { type: 'string', description: 'as Mooncake\'s setup_with_files: mount these files (space-separated paths) as segments instead of memory (setupWithFiles); with several workers, each mounts its share' },
} as const satisfies FlagSpecs;

export type StoreBenchParse = ParseResult<typeof STORE_BENCH_FLAGS>;

/** Flag names as Mooncake's script spells them: `--max-requests`. */
export function dashed(text: string): string {
  return text.replace(/--[a-z][a-z0-9_]*/g, (f) => f.replaceAll('_', '-'));
}

export const STORE_BENCH_HELP = `Usage: transfer-engine store-bench --role=prefill|decode [flags]

Mooncake's store stress benchmark (mooncake-store/tests/stress_cluster_benchmark.py)
with our store client (transfer-engine/store): the same flags, defaults,
keys, values, calls and statistics. Run a prefill, then, while it waits
(--wait-time), a decode of its keys:

  mooncake_master --enable_http_metadata_server=true     (RPC port 50051, metadata on 8080)
  transfer-engine store-bench --role=prefill --value-length=1048576 --max-requests=1000 --batch-size=8 --global-segment-size=2048
  transfer-engine store-bench --role=decode  --value-length=1048576 --max-requests=1000 --batch-size=8 --verify    # another shell

Each worker sets up its own store (its own segment of --global-segment-size
MB, its own buffer of batch-size x value-length bytes, registered) and walks
its keys key0, key1, ... up to its share of --max-requests in batches:
prefill fills the value of key{N} with the byte N % 256 and calls batchPutFrom,
decode calls batchGetInto. With several workers every worker starts at key0,
as in Mooncake's script (worker i gets max-requests / num-workers keys, the
first max-requests % num-workers workers one more), so Python and Node runs
read each other's keys. Workers are concurrent async loops in this one
process, each with its own store; the event loop interleaves them (Mooncake's
script runs a thread per worker).

With --files "a.bin b.bin" (Mooncake's setup_with_files) the prefill's stores
mount those files as their segments instead of memory (each worker its share
of the files): the values are written into the files.

Keep the prefill running while the decode reads: its store mounts a segment
that holds the values the master placed there, and a store that exits
unmounts its segment, which drops them. The prefill waits --wait-time seconds
after its last batch before it exits (SIGINT or SIGTERM ends the wait early:
the run still counts as complete). It says when it is done: "Prefill done"
(with --json: {"event":"prefill_done",...}).

Statistics as Mooncake's report: operations, bytes, wall time (from the
start of setup, including its 1 s settle, as the script has it) and
operation time (the sum of the batch calls), latency per batch (mean, min,
max, p90, p99, p999; Python's statistics.quantiles), operations/s and MB/s
(MiB/s) by operation and wall time, error codes; and the phase wall time
(first batch to last) with its throughput. Operations are keys: Mooncake's
script reports the number of batches with a success as "Total operations"
(and its operations/s are batches/s), and counts each failed key twice.
With --json the last stdout line has all of it.

Flags:
${dashed(formatFlagHelp(STORE_BENCH_FLAGS))}

Exit status: 0 when every operation succeeded (and --verify passed); 1 if an
operation failed, a value read back wrong, a store could not be set up (the
master unreachable...), or a signal cut the operations short; 2 on a usage error.
`;

/** Everything a run needs. */
export interface StoreBenchOptions {
  role: Role;
  protocol: string;
  deviceName: string;
  localHostname: string;
  metadataServer: string;
  masterServer: string;
  /** Bytes. */
  globalSegmentSize: number;
  /** Bytes. */
  localBufferSize: number;
  maxRequests: number;
  valueLength: number;
  batchSize: number;
  waitTimeS: number;
  numWorkers: number;
  detailedStats: boolean;
  json: boolean;
  verify: boolean;
  /** Files each worker mounts as segments (setupWithFiles) instead of --global-segment-size of memory; null: memory. */
  files: string[][] | null;
}

function label(p: StoreBenchParse, name: keyof typeof STORE_BENCH_FLAGS): string {
  return dashed(`--${p.written[name] ?? name}`);
}

function atLeast(p: StoreBenchParse, name: 'max_requests' | 'value_length' | 'batch_size' | 'num_workers' | 'global_segment_size' | 'local_buffer_size', dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const x = p.flags[name] ?? dflt;
  if (x < min) throw new UsageError(`${label(p, name)}=${x}: must be at least ${min}`);
  if (x > max) throw new UsageError(`${label(p, name)}=${x}: must be at most ${max}`);
  return x;
}

function checkProtocol(p: StoreBenchParse): string {
  const proto = (p.flags.protocol ?? 'tcp').trim();
  if (proto.toLowerCase() === 'tcp') return 'tcp';
  const why = HARDWARE_PROTOCOLS.includes(proto.toLowerCase()) ? 'no RDMA devices or GPUs here' : 'unknown transport';
  throw new UsageError(`--protocol=${proto}: not supported on this host (${why}); use --protocol=tcp`);
}

function nonEmpty(p: StoreBenchParse, name: 'local_hostname' | 'metadata_server' | 'master_server' | 'device_name', dflt: string): string {
  const v = (p.flags[name] ?? dflt).trim();
  if (v.length === 0 && name !== 'device_name') throw new UsageError(`${label(p, name)} must not be empty`);
  return v;
}

export function resolveStoreBenchOptions(p: StoreBenchParse): StoreBenchOptions {
  const f = p.flags;
  if (f.role === undefined) throw new UsageError('--role is required: --role=prefill (put the values) or --role=decode (get them)');
  const protocol = checkProtocol(p);
  const metadataServer = nonEmpty(p, 'metadata_server', 'http://127.0.0.1:8080/metadata');
  try {
    parseMetadataConnString(metadataServer);
  } catch (e) {
    if (e instanceof TransferEngineError) throw new UsageError(`${label(p, 'metadata_server')}=${metadataServer}: ${e.message}`);
    throw e;
  }
  const masterServer = nonEmpty(p, 'master_server', 'localhost:50051');
  if (splitHostPort(masterServer).port === undefined) throw new UsageError(`${label(p, 'master_server')}=${masterServer}: expected HOST:PORT (the master's RPC port, 50051 by default)`);
  const localHostname = nonEmpty(p, 'local_hostname', 'localhost');
  const maxSegmentMb = Math.floor(Number.MAX_SAFE_INTEGER / MiB);
  const globalSegmentMb = atLeast(p, 'global_segment_size', 10000, 0, maxSegmentMb);
  const localBufferMb = atLeast(p, 'local_buffer_size', 512, 0, maxSegmentMb);
  const maxRequests = atLeast(p, 'max_requests', 1200, 1);
  const valueLength = atLeast(p, 'value_length', 4 * MiB, 1, bufferConstants.MAX_LENGTH);
  const batchSize = atLeast(p, 'batch_size', 1, 1, 1 << 20);
  const numWorkers = atLeast(p, 'num_workers', 1, 1, MAX_WORKERS);
  if (numWorkers > maxRequests) {
    throw new UsageError(`${label(p, 'num_workers')}=${numWorkers} is more than ${label(p, 'max_requests')}=${maxRequests}: every worker needs a request`);
  }
  if (batchSize * valueLength > bufferConstants.MAX_LENGTH) {
    throw new UsageError(`${label(p, 'batch_size')} x ${label(p, 'value_length')} = ${batchSize * valueLength} bytes per worker buffer, more than one buffer can hold (${bufferConstants.MAX_LENGTH})`);
  }
  const waitTimeS = f.wait_time ?? 20;
  if (!(waitTimeS >= 0)) throw new UsageError(`${label(p, 'wait_time')}=${waitTimeS}: must be 0 or more seconds`);
  if (waitTimeS > 7 * 86400) throw new UsageError(`${label(p, 'wait_time')}=${waitTimeS}: must be at most a week`);
  const verify = f.verify ?? false;
  if (verify && f.role !== 'decode') throw new UsageError('--verify checks what a decode reads: use it with --role=decode');
  let files: string[][] | null = null;
  if (f.files !== undefined) {
    const paths = f.files.split(/\s+/).filter((x) => x.length > 0);
    if (paths.length === 0) throw new UsageError(`${label(p, 'files')} needs at least one path`);
    if (new Set(paths).size !== paths.length) throw new UsageError(`${label(p, 'files')}: a file is named twice (one store per file)`);
    // A file is served by one store (its lock): the workers share the files out, each at least one.
    if (numWorkers > paths.length) throw new UsageError(`${label(p, 'num_workers')}=${numWorkers} is more than the ${paths.length} file(s) of ${label(p, 'files')}: each worker mounts its own files`);
    files = Array.from({ length: numWorkers }, (_, w) => paths.filter((_, i) => i % numWorkers === w));
  }
  return {
    files,
    role: f.role as Role,
    protocol,
    deviceName: nonEmpty(p, 'device_name', 'erdma_0'),
    localHostname,
    metadataServer,
    masterServer,
    globalSegmentSize: globalSegmentMb * MiB,
    localBufferSize: localBufferMb * MiB,
    maxRequests,
    valueLength,
    batchSize,
    waitTimeS,
    numWorkers,
    detailedStats: f.detailed_stats ?? false,
    json: f.json ?? false,
    verify,
  };
}

/** Keys per worker, as Mooncake's script splits --max-requests: the first `remainder` workers get one more. */
export function requestsPerWorker(maxRequests: number, numWorkers: number): number[] {
  const base = Math.floor(maxRequests / numWorkers);
  const remainder = maxRequests % numWorkers;
  return Array.from({ length: numWorkers }, (_, i) => base + (i < remainder ? 1 : 0));
}
