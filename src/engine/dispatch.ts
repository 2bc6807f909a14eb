/**
 * Carrying out plans: a task per request, started on the path its plan names
 * (a local copy, the file I/O pool, a same-host copy through shared memory,
 * TCP slices), and its retry rounds (retry.ts decides; this runs them: the
 * backoff, the descriptor refetch, the resend).
 */
import type { EngineConfig } from '../config.js';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import type { LocalFiles } from '../file/local-files.js';
import { locateShmRegion, type ShmTransport } from '../transport/shm.js';
import { Lease } from '../lease.js';
import { Slice } from '../transport/slice.js';
import type { TcpClient } from '../transport/tcp/client.js';
import { MAX_FILE_REQUEST } from '../transport/tcp/file-serve.js';
import { Task, type Batch } from './batch.js';
import type { Plan } from './planner.js';
import { pieceAt, pieceCount } from '../pieces.js';
import { retryBackoffMs } from './retry.js';
import { filePeer, shmRegionsOf, type SegmentTable } from './segments.js';
import type { TransferCounters } from './types.js';

type RemotePlan = Extract<Plan, { kind: 'remote' }>;

/**
 * Same-host copies larger than this go this much at a time, one piece per
 * event-loop turn: a 64 MiB copy in one piece would hold the loop (every
 * socket, every timer) for its whole duration.
 */
const SHM_CHUNK = 4 * 1024 * 1024;

export interface DispatchContext {
  readonly config: EngineConfig;
  readonly counters: TransferCounters;
  readonly segments: SegmentTable;
  /** The engine is ready (not closed): tasks that wait for something check it again when it comes. */
  ready(): boolean;
  /** The transports as installed now (installTransport / uninstallTransport change them). */
  tcpClient(): TcpClient | null;
  shm(): ShmTransport | null;
  files(): LocalFiles | null;
  /** Source address for data connections carrying memory of a location (EngineOptions.sourceAddress). */
  readonly sourceAddress: ((location: string) => string | undefined) | undefined;
}

export class Dispatcher {
  /** Requests served by a copy into or out of a same-host peer's shared memory. */
  shmCopies = 0;
  /** Slices resent by retry rounds. */
  retries = 0;
  /** Requests to peers' files served directly / sent over TCP although the peer is on this host. */
  fileSameHost = 0;
  fileSameHostFallbacks = 0;
  /** Tasks between retry rounds (backoff, or refetching the descriptor): close() ends them. */
  private readonly retrying = new Set<Task>();

  constructor(private readonly ctx: DispatchContext) {}

  /** Start one planned request as a task of `batch`. */
  start(batch: Batch, p: Plan): void {
    // Remote tasks (and a same-host peer's file) may be retried; local ones never are.
    const seg = p.kind === 'remote' || p.kind === 'file' ? p.seg : null;
    const task = seg || p.kind === 'opening' ? new Task(batch, p.write, this.ctx.counters, seg, this.retryHook) : new Task(batch, p.write, this.ctx.counters);
    batch.tasks.push(task);
    batch.unfinished++;
    switch (p.kind) {
      case 'local-memory':
        if (p.write) p.targetBytes.set(p.local);
        else p.local.set(p.targetBytes);
        task.transferred = p.local.length;
        task.finish();
        return;
      case 'file': {
        if (p.seg) this.fileSameHost++;
        // A local file (or a same-host peer's): the I/O pool reads or writes it; the memory stays pinned until then.
        const pin = new Lease(p.region);
        this.ctx.files()!.transfer(p.file, p.write, Number(p.target), p.local, (err) => {
          pin.release();
          if (err) task.error = err;
          else task.transferred = p.local.length;
          task.finish();
        });
        return;
      }
      case 'opening': {
        // The segment is still opening: the task waits for its descriptor, its memory pinned meanwhile.
        const pin = new Lease(p.region);
        p.pending.segment.then(
          (opened) => {
            pin.release();
            if (!this.ctx.ready()) {
              task.error = teError(ErrorCode.CLOSED, 'the engine was closed while the segment opened');
              task.finish();
              return;
            }
            task.seg = opened;
            task.generation = opened.generation;
            this.sendRemote(task, { kind: 'remote', write: p.write, local: p.local, region: p.region, target: p.target, seg: opened });
          },
          (e: unknown) => {
            pin.release();
            task.error = e instanceof TransferEngineError ? e : teError(ErrorCode.PEER_UNREACHABLE, `cannot open segment "${p.pending.name}": ${String(e)}`, e);
            task.finish();
          },
        );
        return;
      }
      case 'remote':
        if (p.sameHostFallback) this.fileSameHostFallbacks++;
        this.sendRemote(task, p);
        return;
    }
  }

  /** Carry a request to a peer whose descriptor we hold: a same-host copy through shared memory, else TCP slices. */
  private sendRemote(task: Task, p: RemotePlan): void {
    if (p.fileId === undefined && this.copyThroughShm(task, p)) return;
    this.sendTcp(task, p);
  }

  /** TCP slices of TE_TCP_SPLIT_SIZE (file requests: at most MAX_FILE_REQUEST), each pinning its memory. */
  private sendTcp(task: Task, p: RemotePlan): void {
    const split = p.fileId === undefined ? this.ctx.config.splitSize : Math.min(this.ctx.config.splitSize, MAX_FILE_REQUEST);
    const client = this.ctx.tcpClient();
    if (!client) {
      task.error = teError(ErrorCode.NO_TRANSPORT, 'the tcp transport was uninstalled while the segment opened');
      task.finish();
      return;
    }
    const count = pieceCount(p.local.length, split);
    task.pending = count;
    const localAddress = this.ctx.sourceAddress?.(p.region.location);
    const base = p.fileId === undefined ? p.seg.peer : filePeer(p.seg);
    const peer = localAddress === undefined ? base : { ...base, localAddress };
    for (let k = 0; k < count; k++) {
      client.submit(peer, new Slice(task, p.write, p.target + BigInt(k * split), pieceAt(p.local, k, split), p.region, p.fileId));
    }
  }

  /**
   * A peer on this host whose target range lies in one of its shared-memory
   * regions is served by a plain copy. Returns false to let TCP carry the
   * request: another host, no shm region there, or the mapping failed (file
   * gone, size changed); the TCP path then succeeds or reports why not.
   */
  private copyThroughShm(task: Task, p: RemotePlan): boolean {
    const seg = p.seg;
    // Most peers publish no shared memory: that answer is cached per descriptor, so it comes first
    // (the machine-id check compares two long strings, on every request).
    const regions = shmRegionsOf(seg.desc);
    if (regions.length === 0) return false;
    const shm = this.ctx.shm();
    const machineId = seg.desc.machineId;
    if (!shm || !shm.canReach(machineId)) return false;
    const hit = locateShmRegion(regions, p.target, p.local.length);
    if (!hit) return false;
    const len = p.local.length;
    const first = pieceAt(p.local, 0, SHM_CHUNK);
    try {
      shm.copy(machineId, hit.region, hit.offset, first, p.write);
    } catch {
      return false; // TCP carries the request, or says why it cannot
    }
    this.shmCopies++;
    task.transferred = first.length;
    if (first.length === len) {
      task.finish();
      return true;
    }
    // The rest a chunk per event-loop turn, so that other I/O is served in between; the memory stays
    // pinned until the last chunk. A chunk that fails sends what is left over TCP, as a first one does.
    const pin = new Lease(p.region);
    const count = pieceCount(len, SHM_CHUNK);
    let k = 1;
    const next = (): void => {
      if (!this.ctx.ready()) {
        pin.release();
        task.error = teError(ErrorCode.CLOSED, 'the engine was closed during a same-host copy');
        task.finish();
        return;
      }
      const piece = pieceAt(p.local, k, SHM_CHUNK);
      try {
        shm.copy(machineId, hit.region, hit.offset + k * SHM_CHUNK, piece, p.write);
      } catch {
        const done = k * SHM_CHUNK;
        this.sendTcp(task, { ...p, local: p.local.subarray(done), target: p.target + BigInt(done) });
        pin.release();
        return;
      }
      task.transferred += piece.length;
      if (++k < count) {
        setImmediate(next);
        return;
      }
      pin.release();
      task.finish();
    };
    setImmediate(next);
    return true;
  }

  /** Shared by all tasks: no closure per task. */
  private readonly retryHook = (task: Task): void => this.retryTask(task);

  /**
   * A task's round ended with retryable failures: after a backoff (none for
   * pure address rejections, which only a changed descriptor can cure),
   * refetch the descriptor, then resend. The refetch comes every round, not
   * only after refused connects: a dead peer behind a proxy or load balancer
   * looks like connections accepted and reset, and refetches are shared and
   * reused (SegmentTable.refresh). Gives up after MC_RETRY_CNT rounds. The client
   * bounds the connections behind this (per-peer connect budget, pause after
   * repeated connect failures).
   */
  private retryTask(task: Task): void {
    if (task.rounds >= this.ctx.config.retryCount || !this.ctx.ready()) {
      task.giveUp();
      return;
    }
    const round = task.rounds++;
    this.retrying.add(task);
    if (task.needsNewDescriptor) {
      void this.resend(task);
      return;
    }
    const delay = retryBackoffMs(round, Math.random());
    task.retryTimer = setTimeout(() => {
      task.retryTimer = null;
      void this.resend(task);
    }, delay);
  }

  private async resend(task: Task): Promise<void> {
    const seg = task.seg!;
    const moved = (await this.ctx.segments.refresh(seg, task.generation)) === 'changed';
    if (!this.retrying.delete(task)) return; // ended by close()
    if (moved) task.generation = seg.generation;
    else if (task.needsNewDescriptor) {
      task.giveUp(); // rejected by a peer that has not changed (or another engine at a peer that is gone): resending cannot help
      return;
    }
    const client = this.ctx.tcpClient();
    if (!this.ctx.ready() || !client) {
      task.giveUp();
      return;
    }
    const { slices, holds } = task.takeRetryable();
    this.retries += slices.length;
    const localAddress = this.ctx.sourceAddress?.(slices[0]!.region.location);
    const base = slices[0]!.fileId === undefined ? seg.peer : filePeer(seg);
    const peer = localAddress === undefined ? base : { ...base, localAddress };
    // The new slices pin their regions before the round's holds are released: the memory stays pinned.
    for (const s of slices) client.submit(peer, new Slice(task, s.write, s.remoteAddr, s.local, s.region, s.fileId));
    for (const h of holds) h.release();
  }

  /** End tasks waiting between retry rounds (close()). */
  abandonRetries(err: TransferEngineError): void {
    const tasks = [...this.retrying];
    this.retrying.clear();
    for (const t of tasks) {
      if (t.retryTimer) clearTimeout(t.retryTimer);
      t.retryTimer = null;
      t.error ??= err;
      t.giveUp();
    }
  }
}
