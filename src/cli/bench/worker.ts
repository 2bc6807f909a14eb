/**
 * Worker-thread entry of `bench --threads=N`: one ThreadRunner (its own
 * engine and memory). Protocol with the main thread:
 *   worker -> { type: 'ready' } | { type: 'failed', message }
 *   main   -> { type: 'go' }
 *   worker -> { type: 'log', message }* then { type: 'done', result }
 * The main thread stops the loop through the shared `stop` flag.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { BenchOptions } from './options.js';
import { ThreadRunner, type ThreadResult } from './thread.js';

export interface WorkerInput {
  options: BenchOptions;
  segment: string;
  thread: number;
  stop: Int32Array;
  progress: Float64Array;
}

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'log'; message: string }
  | { type: 'done'; result: ThreadResult };

async function main(port: NonNullable<typeof parentPort>, input: WorkerInput): Promise<void> {
  const post = (m: WorkerMessage): void => port.postMessage(m);
  let runner: ThreadRunner;
  try {
    runner = await ThreadRunner.create(input.options, input.segment, input.thread, (message) => post({ type: 'log', message }));
  } catch (e) {
    post({ type: 'failed', message: e instanceof Error ? e.message : String(e) });
    return;
  }
  try {
    const go = new Promise<void>((resolve) => port.once('message', () => resolve()));
    post({ type: 'ready' });
    await go;
    const result = await runner.run({ stop: input.stop, progress: input.progress });
    post({ type: 'done', result });
  } finally {
    await runner.close();
    port.close();
  }
}

if (parentPort) await main(parentPort, workerData as WorkerInput);
