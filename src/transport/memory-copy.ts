/**
 * Requests to this engine's own memory (LOCAL_SEGMENT): one copy, at once,
 * on the calling turn. Both ranges were checked by the planner.
 */
import type { Job, TaskSink, Transport } from './transport.js';

export class MemoryCopy implements Transport {
  readonly name = 'memory';
  private copies = 0;

  canServe(job: Job): boolean {
    return job.to.kind === 'memory';
  }

  submit(task: TaskSink, job: Job): void {
    if (job.to.kind !== 'memory') return; // canServe said no
    if (job.write) job.to.bytes.set(job.local);
    else job.local.set(job.to.bytes);
    this.copies++;
    task.transferred = job.local.length;
    task.finish();
  }

  stats(): { copies: number } {
    return { copies: this.copies };
  }

  close(): void {}
}
