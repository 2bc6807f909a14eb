/**
 * The engine's `node:diagnostics_channel` channels, as undici publishes its
 * own: subscribe with `diagnostics_channel.subscribe(name, fn)`. Each payload
 * is a plain object whose shape is fixed here (and in docs/diagnostics.md);
 * publishers build it only when `hasSubscribers` is true, so nobody pays for
 * events nobody reads.
 */
import diagnostics from 'node:diagnostics_channel';

export type Opcode = 'read' | 'write';

/** A request was accepted into a batch (submitTransfer). */
export interface TransferSubmitEvent {
  /** The engine's id (its descriptor's engine_id): several engines may share a process. */
  engineId: number;
  batchId: number;
  /** Index of the request's task in its batch. */
  taskId: number;
  opcode: Opcode;
  length: number;
  /** The target segment's handle (0: this engine). */
  segment: number;
}

/** A task ended. `transport` carried it (the last one, when a same-host copy handed the rest to TCP). */
export interface TransferCompleteEvent {
  engineId: number;
  batchId: number;
  taskId: number;
  opcode: Opcode;
  /** Bytes acknowledged. */
  bytes: number;
  transport: string;
  /** From submit to end. */
  durationMs: number;
}

/** A task failed or timed out: the complete event's fields and why. */
export interface TransferErrorEvent extends TransferCompleteEvent {
  /** The error code (TE_*). */
  code: string;
  message: string;
}

/** A data connection to a peer opened, or failed to. */
export interface ConnectEvent {
  host: string;
  port: number;
  /** The connection carries file requests. */
  files: boolean;
  ok: boolean;
  /** Why it failed (ok false). */
  error?: string;
}

/** A retry round starts: a task's failed slices are sent again. */
export interface RetryEvent {
  engineId: number;
  segment: string;
  /** 1 for the first retry. */
  round: number;
  slices: number;
}

/** A peer was paused after failing to connect repeatedly: requests to it fail at once meanwhile. */
export interface PeerPauseEvent {
  host: string;
  port: number;
  pauseMs: number;
}

/** An exchange with a peer's RPC port ended (descriptor fetch, notify, probe). */
export interface HandshakeEvent {
  engineId: number;
  segment: string;
  type: 'metadata' | 'notify' | 'probe';
  ok: boolean;
  durationMs: number;
  error?: string;
}

export const channels = {
  submit: diagnostics.channel('transfer-engine:transfer:submit'),
  complete: diagnostics.channel('transfer-engine:transfer:complete'),
  error: diagnostics.channel('transfer-engine:transfer:error'),
  connect: diagnostics.channel('transfer-engine:connect'),
  retry: diagnostics.channel('transfer-engine:retry'),
  peerPause: diagnostics.channel('transfer-engine:peer-pause'),
  handshake: diagnostics.channel('transfer-engine:handshake'),
} as const;
