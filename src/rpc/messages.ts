/**
 * The RPC port's two small messages besides the descriptor fetch, as
 * Mooncake's peers write and read them: Notify (`{ name, notify_msg }`, its
 * acknowledgement echoing a non-empty notify_msg) and Probe (a reply with
 * `"status": "success"`). Pure: frames in, frames out.
 */
import { teError, ErrorCode } from '../errors.js';
import type { Notification } from './handshake.js';

/**
 * A Notify message's frame JSON, refused (TE_INVALID_ARGUMENT) when it makes a
 * handshake frame larger than `maxFrame`: the peer would close on it without a word.
 */
export function notifyJson(notify: Notification, maxFrame: number): string {
  if (typeof notify?.name !== 'string' || typeof notify.msg !== 'string') {
    throw teError(ErrorCode.INVALID_ARGUMENT, 'a notification is { name: string, msg: string }');
  }
  const json = `${JSON.stringify({ name: notify.name, notify_msg: notify.msg })}\n`;
  const frame = Buffer.byteLength(json) + 1; // the length counts the type byte
  if (frame > maxFrame) {
    throw teError(
      ErrorCode.INVALID_ARGUMENT,
      `the notification makes a ${frame}-byte handshake frame, above the ${maxFrame}-byte limit (MC_HANDSHAKE_MAX_LENGTH, which peers apply too); send large data as a transfer`,
    );
  }
  return json;
}

/** Did the peer accept a Notify? Mooncake treats an empty notify_msg in the reply as a refusal. */
export function notifyAccepted(reply: string): boolean {
  let ack: unknown;
  try {
    ack = JSON.parse(reply);
  } catch {
    return false;
  }
  const msg = typeof ack === 'object' && ack !== null ? (ack as { notify_msg?: unknown }).notify_msg : undefined;
  return typeof msg === 'string' && msg.length > 0;
}

/** Did the peer answer a Probe with success? */
export function probeSucceeded(reply: string): boolean {
  return /"status"\s*:\s*"success"/.test(reply);
}
