/**
 * `transfer-engine bench`: throughput and latency of batched READ/WRITE
 * transfers, shaped after Mooncake's transfer_engine_bench (the v1 flag
 * names and defaults of doc/en/v1/transfer-engine-bench-v1.md on Mooncake's
 * v1.0-beta branch; the classic names work as aliases).
 *
 *   --mode=target      register memory, print the initiator command, serve until SIGINT/SIGTERM
 *   --mode=initiator   open --remote_segment and drive batches for --duration seconds
 *   --loopback         both: a target in a child process, the initiator here
 *
 * The pieces live in ./bench/: options (flags), target, initiator (threads,
 * progress), thread (one submit loop; worker.ts runs it in a worker thread),
 * histogram (latency percentiles), report, loopback.
 *
 * File segments are benchmarked by ./bench-file.js when that module is
 * present: runBench hands it the whole argv when its isFileBench(argv) says
 * so (--files, --file_mode).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { envVar } from '../env.js';
import { makeCa, makeCert, tlsEnv } from './pki.js';
import { parseFlags, UsageError } from './args.js';
import { BENCH_FLAGS, BENCH_HELP, resolveOptions } from './bench/options.js';
import { runInitiator } from './bench/initiator.js';
import { runLoopback } from './bench/loopback.js';
import { report } from './bench/report.js';
import { runTarget } from './bench/target.js';

export { BENCH_FLAGS, BENCH_HELP, resolveOptions } from './bench/options.js';
export type { BenchOptions } from './bench/options.js';

/** The file-segment bench (./bench-file.ts): selects itself from argv (--files, --file_mode). */
interface FileBenchModule {
  isFileBench(argv: readonly string[]): boolean;
  runFileBench(argv: readonly string[]): Promise<number>;
}

function isFileBenchModule(m: unknown): m is FileBenchModule {
  return (
    typeof m === 'object' && m !== null && 'isFileBench' in m && typeof m.isFileBench === 'function' && 'runFileBench' in m && typeof m.runFileBench === 'function'
  );
}

/**
 * Loaded on demand, so this bench builds and runs without it: null when the
 * module is absent. A module that is present but broken is an error.
 */
async function loadFileBench(): Promise<FileBenchModule | null> {
  const specifier = './bench-file.js';
  let mod: unknown;
  try {
    mod = await import(specifier);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes('bench-file')) return null;
    throw e;
  }
  if (!isFileBenchModule(mod)) throw new Error('src/cli/bench-file.js must export isFileBench(argv) and runFileBench(argv)');
  return mod;
}

/** Run `bench` with its argv; resolves to the exit code. Usage mistakes throw UsageError. */
export async function runBench(argv: readonly string[]): Promise<number> {
  const files = await loadFileBench();
  if (files?.isFileBench(argv)) return files.runFileBench(argv);
  const parsed = parseFlags(argv, BENCH_FLAGS);
  if (parsed.help) {
    process.stdout.write(BENCH_HELP);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument "${parsed.positionals[0]}"`);
  const o = resolveOptions(parsed);
  switch (o.mode) {
    case 'target':
      return runTarget(o);
    case 'initiator':
      return report(o, await runInitiator(o, o.remoteSegment), null);
    case 'loopback':
      return o.tls && envVar('TE_TLS_CERT') === undefined ? withThrowawayCertificates(() => runLoopback(o)) : runLoopback(o);
  }
}

/**
 * `--loopback --tls` without TE_TLS_*: a CA and one certificate in a temporary
 * folder, set in TE_TLS_* for this process, its worker threads and the target
 * child (both ends may share a certificate: each checks the other's against
 * the CA); the folder is removed afterwards.
 */
async function withThrowawayCertificates(run: () => Promise<number>): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'transfer-engine-bench-tls-'));
  let vars: Record<string, string> = {};
  try {
    const pki = makeCa(dir);
    vars = tlsEnv(pki, makeCert(pki, 'bench'));
    Object.assign(process.env, vars);
    return await run();
  } finally {
    for (const k of Object.keys(vars)) Reflect.deleteProperty(process.env, k);
    rmSync(dir, { recursive: true, force: true });
  }
}
