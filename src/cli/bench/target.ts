/**
 * The target side: register memory (one buffer per NUMA node, as Mooncake's
 * bench does, each big enough for size x batch x threads), print the exact
 * command that starts an initiator against it, serve until SIGINT/SIGTERM.
 */
import path from 'node:path';
import { TransferEngine } from '../../core.js';
import { envVar } from '../../env.js';
import type { BenchOptions } from './options.js';
import { engineOptions, numaNodeCount } from './thread.js';

export async function runTarget(o: BenchOptions): Promise<number> {
  const engine = new TransferEngine(engineOptions(o));
  await engine.init(o.localSegment);
  try {
    const buffers = numaNodeCount();
    for (let i = 0; i < buffers; i++) engine.allocateLocalMemory(o.bufferBytes, `cpu:${i}`); // zeroed: never exposes stale memory
    await engine.flushMetadata(); // central modes: published before initiators are told to start
    const stop = stopRequested(); // handlers first: a signal right after the announcement must stop us cleanly
    announceTarget(engine.segmentName, buffers, o);
    const progress = process.stdout.isTTY && !o.json ? servedProgress(engine) : null;
    await stop;
    progress?.stop();
  } finally {
    await engine.close();
  }
  if (!o.json) process.stdout.write('Target stopped.\n');
  return 0;
}

function announceTarget(segment: string, buffers: number, o: BenchOptions): void {
  const command = initiatorCommand(segment, o);
  const mooncake = o.shmfs ? undefined : mooncakeCommand(segment, o);
  if (o.json) {
    const ready = {
      event: 'target_ready',
      segment,
      pid: process.pid,
      buffers,
      buffer_bytes: o.bufferBytes,
      initiator_command: command,
      ...(mooncake ? { mooncake_initiator_command: mooncake } : {}),
    };
    process.stdout.write(`${JSON.stringify(ready)}\n`);
    return;
  }
  process.stdout.write(
    `Target ready: segment ${segment}, ${buffers} buffer${buffers > 1 ? 's' : ''} of ${o.bufferBytes} bytes registered (pid ${process.pid}).\n` +
      `Start an initiator with:\n  ${command}\n` +
      (mooncake ? `or with Mooncake's transfer_engine_bench:\n  ${mooncake}\n` : '') +
      'Stop with Ctrl-C or SIGTERM.\n',
  );
}

/** The command that runs our initiator against this target, sized to fit its memory. */
export function initiatorCommand(segment: string, o: BenchOptions): string {
  const script = process.argv[1] ?? '';
  let bin = `${shellQuote(process.execPath)} ${shellQuote(script)}`;
  // Started through the package bin: repeat that (npx sets npm_command=exec; its bin dir is not on PATH later).
  if (path.basename(script) === 'transfer-engine') bin = envVar('npm_command') === 'exec' ? 'npx transfer-engine' : 'transfer-engine';
  const meta = o.metadataFlags.map((f) => ` ${shellQuote(f)}`).join('');
  return (
    `${bin} bench --mode=initiator --remote_segment=${shellQuote(segment)}${meta} --size=${o.size} --batch=${o.batch} --threads=${o.threads}` +
    (o.shmfs ? ' --shmfs' : '')
  );
}

/** The same with Mooncake's classic transfer_engine_bench (TCP forced: this host has no RDMA). */
function mooncakeCommand(segment: string, o: BenchOptions): string {
  return (
    `MC_FORCE_TCP=1 transfer_engine_bench --mode=initiator --protocol=tcp --metadata_server=${shellQuote(o.metadataServer)} ` +
    `--segment_id=${shellQuote(segment)} --block_size=${o.size} --batch_size=${o.batch} --threads=${o.threads}`
  );
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./[\]-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

/** On a terminal: requests served so far, every second. */
function servedProgress(engine: TransferEngine): { stop(): void } {
  let last = 0;
  const timer = setInterval(() => {
    const s = engine.stats();
    const rate = s.requestsServed - last;
    last = s.requestsServed;
    process.stdout.write(`\r\x1b[2K  served ${s.requestsServed} requests (${rate}/s) on ${s.dataConnections} connection${s.dataConnections === 1 ? '' : 's'}`);
  }, 1000);
  return {
    stop: () => {
      clearInterval(timer);
      process.stdout.write('\r\x1b[2K');
    },
  };
}

/**
 * The environment of a --loopback target child (memory and file bench): ours
 * with the metrics port off. TE_METRICS_PORT is then served by this process
 * (the initiator) only; the child inherited it and, binding the same port
 * first, made the initiator's init() fail with TE_PORT_IN_USE.
 */
export function loopbackTargetEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, TE_METRICS_PORT: '0' };
}

/**
 * Resolves on SIGINT or SIGTERM, or when the parent that spawned us with an
 * IPC channel (--loopback) goes away, so a killed parent never leaks a target.
 */
export function stopRequested(): Promise<void> {
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
