/** Notify and Probe frames (src/rpc/messages.ts): what we send, and how a peer's reply is read, garbage included. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode, TransferEngineError } from '../src/errors.js';
import { notifyAccepted, notifyJson, probeSucceeded } from '../src/rpc/messages.js';
import type { Notification } from '../src/rpc/handshake.js';

const invalid = (e: unknown): boolean => e instanceof TransferEngineError && e.code === ErrorCode.INVALID_ARGUMENT;

describe('Notify', () => {
  test('the frame is Mooncake\'s JSON line: name and notify_msg', () => {
    assert.equal(notifyJson({ name: 'n', msg: 'hello "x"' }, 1 << 20), '{"name":"n","notify_msg":"hello \\"x\\""}\n');
  });

  test('a frame over the limit (the type byte counted) is refused; one at the limit is not', () => {
    const json = notifyJson({ name: 'n', msg: 'x'.repeat(100) }, 1 << 20);
    const exact = Buffer.byteLength(json) + 1;
    assert.equal(notifyJson({ name: 'n', msg: 'x'.repeat(100) }, exact), json);
    assert.throws(() => notifyJson({ name: 'n', msg: 'x'.repeat(100) }, exact - 1), invalid);
  });

  test('not a { name, msg } of strings: refused', () => {
    for (const bad of [null, {}, { name: 1, msg: 'm' }, { name: 'n' }, { name: 'n', msg: 2 }]) {
      assert.throws(() => notifyJson(bad as unknown as Notification, 1 << 20), invalid, JSON.stringify(bad));
    }
  });

  test('a reply accepts only with a non-empty notify_msg string; garbage never throws', () => {
    assert.equal(notifyAccepted('{"name":"a","notify_msg":"ok"}\n'), true);
    for (const reply of ['', 'null', '{}', '{"notify_msg":""}', '{"notify_msg":1}', '[', '{"notify_msg":"ok"', '"ok"', '\u0000\u00ff']) {
      assert.equal(notifyAccepted(reply), false, JSON.stringify(reply));
    }
  });
});

describe('Probe', () => {
  test('success only when the reply says so', () => {
    assert.equal(probeSucceeded('{"status": "success"}'), true);
    assert.equal(probeSucceeded('{"status":"success"}\n'), true);
    for (const reply of ['', '{}', '{"status":"failed"}', 'success', 'null']) assert.equal(probeSucceeded(reply), false, reply);
  });
});
