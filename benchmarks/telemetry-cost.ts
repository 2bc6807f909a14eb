/**
 * What the engine's telemetry (src/engine/telemetry.ts) costs per transfer
 * task, measured apart from the loopback bench, whose run-to-run noise
 * (BENCHMARKS.md, issue 20: 1.00x then 1.06x) is far larger than the cost.
 * Issue 20 asks for no cost when nobody subscribes: "4 KiB batch-1 latency
 * unchanged".
 *
 * Cases, each `--iterations` tasks per round, in ns per task:
 *   baseline      what a task costs without telemetry here: build the object
 *                 telemetry reads (one literal, endedTask below) and keep it
 *                 (a ring, as a batch keeps its tasks)
 *   no subscriber the baseline plus what issue 20 added per batch-1 request:
 *                 the submit-time clock read (batch.submittedAt, once per
 *                 submitTransfer call), submitted() (a hasSubscribers check),
 *                 taskStarted() and taskEnded() of a completed task
 *   subscriber    the same with a subscriber on transfer:complete (the event
 *                 object is built and delivered)
 *   failing task  the same for a task that failed (error set, no subscriber
 *                 on transfer:error): the per-code map update and its key
 * Rounds alternate the order of the cases (rotated each round, reversed every
 * other one); the first two rounds are warm-up, not counted. Reported: the
 * median and the spread (min-max) over the rounds, and each case minus the
 * baseline of the same round (median, min-max). With --loopback S (default 3;
 * 0: skip) a short real loopback run afterwards (`bench --loopback`, 4 KiB
 * READ, batch 1, 1 thread, S seconds) gives the batch p50 latency the
 * difference is compared with; without it compare with BENCHMARKS.md's.
 *
 *   node dist/benchmarks/telemetry-cost.js [--rounds 21] [--iterations 200000]
 *     [--loopback 3] [--max-load 1] [--idle-wait 300] [--json]
 */
import { execFile } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import type { TransferCompleteEvent } from '../src/diagnostics.js';
import { ErrorCode, teError, type TransferEngineError } from '../src/errors.js';
import { Telemetry, type EndedTask } from '../src/engine/telemetry.js';
import { TransferOpcode, type TransferRequest } from '../src/engine/types.js';
import { median, waitIdle } from './lib.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '21' },
    iterations: { type: 'string', default: '200000' },
    loopback: { type: 'string', default: '3' },
    'max-load': { type: 'string', default: '1' },
    'idle-wait': { type: 'string', default: '300' },
    json: { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const iterations = Number(values.iterations);
const loopbackS = Number(values.loopback);
const WARMUP = 2;

/** A loopback 4 KiB READ's latency (ms): the task's age when it ends, so the histogram search goes as deep as in a real run. */
const TASK_MS = 0.08;
/** Tasks kept alive, as a batch keeps its tasks until freed. */
const RING = 1024;
const FAILURE: TransferEngineError = teError(ErrorCode.PEER_UNREACHABLE, 'connect ECONNREFUSED 127.0.0.1:1');
const REQUESTS: readonly TransferRequest[] = [{ opcode: TransferOpcode.READ, source: 0, targetId: 1, targetOffset: 0, length: 4096 }];

/**
 * The task telemetry reads when it ends (batch.ts hands it its Task). One
 * literal: a field added to EndedTask (say the target `segment`) is one more
 * line here, and the compiler asks for it.
 */
function endedTask(batchId: number, startedAt: number, error: TransferEngineError | undefined): EndedTask {
  return {
    write: false,
    transferred: error === undefined ? 4096 : 0,
    error,
    timedOut: false,
    via: 'tcp',
    startedAt,
    batchId,
    index: 0,
  };
}

interface Case {
  name: string;
  /** Runs `n` tasks; returns something derived from them, so nothing is optimized away. */
  run(n: number): number;
}

const ring: EndedTask[] = new Array<EndedTask>(RING);

function baseline(n: number): number {
  let sink = 0;
  for (let i = 0; i < n; i++) {
    const t = endedTask(i, TASK_MS, undefined);
    ring[i & (RING - 1)] = t;
    sink += t.transferred;
  }
  return sink;
}

/** The telemetry of one batch-1 request, as engine.ts (submitTransfer) and batch.ts (Task) call it. */
function withTelemetry(tel: Telemetry, error: TransferEngineError | undefined): (n: number) => number {
  return (n) => {
    for (let i = 0; i < n; i++) {
      const startedAt = performance.now() - TASK_MS; // batch.submittedAt
      tel.submitted(i, 0, REQUESTS);
      tel.taskStarted();
      const t = endedTask(i, startedAt, error);
      ring[i & (RING - 1)] = t;
      tel.taskEnded(t);
    }
    return tel.counters.bytesRead + tel.counters.tasksFailed;
  };
}

let delivered = 0;
const onComplete = (m: unknown): void => {
  delivered += (m as TransferCompleteEvent).bytes;
};
const COMPLETE = 'transfer-engine:transfer:complete';

const CASES: Case[] = [
  { name: 'baseline (task object only)', run: baseline },
  { name: 'telemetry, no subscriber', run: withTelemetry(new Telemetry(1), undefined) },
  {
    name: 'telemetry, transfer:complete subscriber',
    run: (() => {
      const inner = withTelemetry(new Telemetry(2), undefined);
      return (n: number): number => {
        diagnostics.subscribe(COMPLETE, onComplete);
        try {
          return inner(n);
        } finally {
          diagnostics.unsubscribe(COMPLETE, onComplete);
        }
      };
    })(),
  },
  { name: 'telemetry, failing task, no subscriber', run: withTelemetry(new Telemetry(3), FAILURE) },
];

async function loopbackP50(seconds: number): Promise<number> {
  const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const args = [cli, 'bench', '--loopback', '--workload=read', '--size=4096', '--batch=1', '--threads=1', `--duration=${seconds}`, '--integrity_check=false', '--json'];
  const { stdout } = await promisify(execFile)(process.execPath, args, { maxBuffer: 1 << 20 });
  return (JSON.parse(stdout.trim().split('\n').pop()!) as { latency_us: { batch: { p50: number } } }).latency_us.batch.p50;
}

async function main(): Promise<void> {
  const log = (m: string): void => void process.stderr.write(`[telemetry-cost] ${m}\n`);
  const load = await waitIdle(Number(values['max-load']), Number(values['idle-wait']), log);
  const ns: number[][] = CASES.map(() => []);
  let sink = 0;
  for (let r = 0; r < WARMUP + rounds; r++) {
    const order = CASES.map((_, i) => (i + r) % CASES.length);
    if (r % 2 === 1) order.reverse();
    for (const i of order) {
      const t0 = process.hrtime.bigint();
      sink += CASES[i]!.run(iterations);
      const elapsed = Number(process.hrtime.bigint() - t0);
      if (r >= WARMUP) ns[i]!.push(elapsed / iterations);
    }
  }
  if (delivered === 0 || sink === 0) throw new Error('nothing was measured');
  const p50us = loopbackS > 0 ? await loopbackP50(loopbackS) : undefined;

  const f = (xs: number[]): string => `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)} to ${Math.max(...xs).toFixed(1)})`;
  const minusBase = (i: number): number[] => ns[i]!.map((x, r) => x - ns[0]![r]!);
  const share = (nsPerTask: number): string => (p50us === undefined ? '' : ` | ${((nsPerTask / (p50us * 1000)) * 100).toFixed(3)} %`);
  const lines = [
    `Command: \`node dist/benchmarks/telemetry-cost.js --rounds ${rounds} --iterations ${iterations} --loopback ${loopbackS}\` (${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, node ${process.version}, 1-min load ${load.toFixed(2)} at start).`,
    '',
    `| case | ns per task: median (min to max) | minus baseline, same round: median (min to max)${p50us === undefined ? '' : ' | median minus baseline / batch-1 p50'} |`,
    `|---|---:|---:|${p50us === undefined ? '' : '---:|'}`,
  ];
  for (const [i, c] of CASES.entries()) {
    lines.push(i === 0 ? `| ${c.name} | ${f(ns[0]!)} | -${p50us === undefined ? '' : ' | -'} |` : `| ${c.name} | ${f(ns[i]!)} | ${f(minusBase(i))}${share(median(minusBase(i)))} |`);
  }
  lines.push('');
  lines.push(
    p50us === undefined
      ? 'No loopback run (--loopback 0): compare with the 4 KiB batch-1 p50 in BENCHMARKS.md (issue 20: 82-89 us).'
      : `4 KiB READ batch-1 p50 of a ${loopbackS} s \`bench --loopback\` run after the rounds: ${p50us} us.`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  if (values.json) {
    const result = { node: process.version, load, rounds, iterations, cases: CASES.map((c, i) => ({ name: c.name, ns_per_task: ns[i] })), loopback_p50_us: p50us ?? null };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
