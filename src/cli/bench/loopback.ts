/** `--loopback`: a target in a child process, the initiator here; the target is always stopped and reaped. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { runInitiator, type BenchResult } from './initiator.js';
import type { BenchOptions } from './options.js';
import { report, type TargetExit } from './report.js';

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
