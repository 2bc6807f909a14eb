/**
 * `--loopback`: a target in a child process, the initiator here; the target is
 * always stopped and reaped. If it exits during the run, the run stops at once
 * and says so: we know it died, no need to infer it from failing requests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { runInitiator, TargetLostError, type BenchResult } from './initiator.js';
import type { BenchOptions } from './options.js';
import { report, type TargetExit } from './report.js';
import { loopbackTargetEnv } from './target.js';

const MAIN_JS = fileURLToPath(new URL('../main.js', import.meta.url));
const TARGET_READY_TIMEOUT_MS = 20_000;
const TARGET_STOP_TIMEOUT_MS = 10_000;

export async function runLoopback(o: BenchOptions): Promise<number> {
  const child = spawn(
    process.execPath,
    [
      MAIN_JS, 'bench', '--mode=target', '--json', `--local_segment=${o.metadataFlags.length > 0 ? `bench-target-${process.pid}` : o.localSegment}`,
      `--size=${o.size}`, `--batch=${o.batch}`, `--threads=${o.threads}`, `--buffer_size=${o.bufferBytes}`,
      ...(o.shmfs ? ['--shmfs'] : []), ...o.metadataFlags,
    ],
    // Own process group: a terminal Ctrl-C stops our run first, then we stop the target.
    // The IPC channel lets the target notice if we die without stopping it.
    // TE_METRICS_PORT is the initiator's: the target does not serve metrics.
    { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], detached: true, env: loopbackTargetEnv() },
  );
  const pid = child.pid ?? -1;
  const lost = new AbortController();
  const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
    lost.abort(new TargetLostError(`the target process (pid ${pid}) exited with ${exitText(code, signal)}`));
  let result: BenchResult;
  let exit: TargetExit;
  try {
    const segment = await targetReady(child);
    child.once('exit', onExit);
    if (child.exitCode !== null || child.signalCode !== null) onExit(child.exitCode, child.signalCode);
    announceTarget(o, segment, pid);
    result = await runInitiator(o, segment, lost.signal).catch((e: unknown) => {
      // Starting the initiator failed because the target died meanwhile: say that, not only the symptom.
      if (!lost.signal.aborted) throw e;
      const died = lost.signal.reason instanceof Error ? lost.signal.reason.message : 'the target process exited';
      throw new TargetLostError(`the target died before the run started: ${died} (${e instanceof Error ? e.message : String(e)})`, { cause: e });
    });
  } finally {
    child.off('exit', onExit);
    // A target that died during the run was reported as such; a second "did not exit cleanly" line adds nothing.
    exit = await stopTarget(child, { quiet: lost.signal.aborted });
  }
  return report(o, result, exit);
}

function exitText(code: number | null, signal: NodeJS.Signals | null): string {
  return signal !== null ? `signal ${signal}` : `exit code ${code}`;
}

/**
 * Say which process the target is: a user can then watch it (top, perf, strace)
 * or kill it to see how the initiator copes. With --json it is a line of its
 * own before the result, which stays the last line.
 */
function announceTarget(o: BenchOptions, segment: string, pid: number): void {
  if (o.json) process.stdout.write(`${JSON.stringify({ event: 'target_ready', segment, pid })}\n`);
  else (o.csv ? process.stderr : process.stdout).write(`Target ready in a child process: segment ${segment}, pid ${pid}.\n`);
}

/** Wait for the target's JSON ready line on its stdout; returns its segment name. */
function targetReady(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => fail(new Error(`the target did not get ready within ${TARGET_READY_TIMEOUT_MS / 1000} s`)), TARGET_READY_TIMEOUT_MS);
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => fail(new Error(`the target exited before it was ready (${exitText(code, signal)})`));
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
async function stopTarget(child: ChildProcess, { quiet }: { quiet: boolean }): Promise<TargetExit> {
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
  if (!clean && !quiet) process.stderr.write(`transfer-engine bench: the target (pid ${pid}) did not exit cleanly (${child.signalCode ?? `exit code ${child.exitCode}`})\n`);
  return { pid, exitCode: child.exitCode, signal: child.signalCode, clean };
}
