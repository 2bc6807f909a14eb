/**
 * Package entry points: the root gives the high-level API (Mooncake's
 * `from mooncake.engine import TransferEngine`), 'transfer-engine/core' the
 * core engine. Resolved through package.json "exports", as a user's import is.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';

test("'transfer-engine' is the high-level API", async () => {
  const root = await import('transfer-engine');
  const e = new root.TransferEngine();
  assert.equal(typeof e.initialize, 'function');
  assert.equal(typeof e.transferSyncWrite, 'function');
  assert.equal(root.TransferEngine.TransferOpcode.READ, 0);
  assert.equal(root.TransferOpcode.WRITE, 1);
  assert.equal(root.ERR_TIMEOUT, -2);
  assert.equal(root.ReturnCode.ERR_ADDRESS_NOT_REGISTERED, -3);
  assert.equal(root.returnCodeName(-102), 'ERR_PEER_UNREACHABLE');
  assert.equal(typeof root.TransferNotify, 'function');
  assert.equal(typeof root.ErrorCode.TIMEOUT, 'string');
});

test("'transfer-engine/core' is the core engine", async () => {
  const core = await import('transfer-engine/core');
  const e = new core.TransferEngine();
  assert.equal(typeof e.init, 'function');
  assert.equal(typeof e.submitTransfer, 'function');
  assert.equal(core.TaskStatus.COMPLETED, 4);
  assert.equal(core.LOCAL_SEGMENT, 0);
});

test('every negative code has a distinct value and a name', async () => {
  const { ReturnCode, returnCodeName } = await import('transfer-engine');
  const values = Object.values(ReturnCode);
  assert.equal(new Set(values).size, values.length);
  for (const [name, v] of Object.entries(ReturnCode)) {
    assert.ok(name === 'OK' ? v === 0 : v < 0, name);
    assert.equal(returnCodeName(v), name);
  }
});
