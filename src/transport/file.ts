/**
 * Requests to files this engine registered: read and written by the file I/O
 * pool (src/file/io.ts). `fileTransfer` is also how a same-host peer's file is
 * served once it is opened here (file-same-host.ts).
 */
import type { LocalFiles } from '../file/local-files.js';
import type { RegisteredFile } from '../file/registry.js';
import { Lease } from '../lease.js';
import type { Job, TaskSink, Transport } from './transport.js';

/** One file operation for a task: the memory stays pinned (and the file held) until the I/O returns. */
export function fileTransfer(files: LocalFiles, task: TaskSink, job: Job, file: RegisteredFile): void {
  const pin = new Lease(job.region);
  files.transfer(file, job.write, Number(job.target), job.local, (err) => {
    pin.release();
    if (err) task.error = err;
    else task.transferred = job.local.length;
    task.finish();
  });
}

export class FileTransport implements Transport {
  readonly name = 'file';
  private operations = 0;

  constructor(private readonly files: LocalFiles) {}

  canServe(job: Job): boolean {
    return job.to.kind === 'file';
  }

  submit(task: TaskSink, job: Job): void {
    if (job.to.kind !== 'file') return; // canServe said no
    this.operations++;
    fileTransfer(this.files, task, job, job.to.file);
  }

  stats(): { operations: number } {
    return { operations: this.operations };
  }

  /** The pool is the engine's (it serves peers too); the engine closes it. */
  close(): void {}
}
