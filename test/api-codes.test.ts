/**
 * The core-code -> return-code map (src/api/codes.ts) and the argument-count
 * check (src/api/args.ts): every core ErrorCode has a return code of its own
 * choosing (none falls through to ERR_FAILED by accident), the codes that once
 * did map to what a caller expects (auth refusals are a peer that cannot be
 * reached, end to end too), and the count check counts the arguments given.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  TransferEngine,
  TransferOpcode,
  ReturnCode,
  ERR_FAILED,
  ERR_PEER_UNREACHABLE,
  ERR_INVALID_MANAGED_BUFFER,
  ErrorCode,
  TransferEngineError,
} from '../src/index.js';
import { TransferEngine as CoreEngine } from '../src/core.js';
import { RETURN_CODE_OF, returnCodeFor, ApiFailure } from '../src/api/codes.js';
import { arity } from '../src/api/args.js';
import { teError } from '../src/errors.js';

const QUIET = { ...process.env, MC_LOG_LEVEL: 'ERROR' };
const SECRET = 'correct horse battery staple';

describe('every core error code has a return code', () => {
  it('the map lists exactly the ErrorCode values, each mapped to a negative ReturnCode', () => {
    const codes = Object.values(ErrorCode);
    assert.deepEqual(Object.keys(RETURN_CODE_OF).sort(), [...codes].sort(), 'one entry per ErrorCode, and no other');
    const returnCodes = new Set<number>(Object.values(ReturnCode));
    for (const code of codes) {
      const rc = returnCodeFor(teError(code, 'x'));
      assert.ok(returnCodes.has(rc) && rc < 0, `${code} -> ${rc}`);
      assert.equal(rc, RETURN_CODE_OF[code], code);
    }
  });

  it('the codes that once fell through to ERR_FAILED: auth refusals are ERR_PEER_UNREACHABLE; I/O and store errors stay ERR_FAILED, on purpose', () => {
    assert.equal(returnCodeFor(teError(ErrorCode.AUTH_REQUIRED, 'x')), ERR_PEER_UNREACHABLE);
    assert.equal(returnCodeFor(teError(ErrorCode.AUTH_FAILED, 'x')), ERR_PEER_UNREACHABLE);
    assert.equal(returnCodeFor(teError(ErrorCode.IO_ERROR, 'x')), ERR_FAILED);
    assert.equal(returnCodeFor(teError(ErrorCode.STORE_ERROR, 'x')), ERR_FAILED);
    assert.equal(returnCodeFor(teError(ErrorCode.ADDRESS_REJECTED, 'x')), ERR_FAILED);
  });

  it('a failure that names its own return code keeps it; a code outside ErrorCode is the generic failure', () => {
    assert.equal(returnCodeFor(new ApiFailure(ERR_INVALID_MANAGED_BUFFER, ErrorCode.INVALID_ARGUMENT, 'x')), ERR_INVALID_MANAGED_BUFFER);
    assert.equal(returnCodeFor(new TransferEngineError('TE_NOT_A_CODE' as ErrorCode, 'x')), ERR_FAILED);
  });

  it('end to end: a peer that requires authentication is ERR_PEER_UNREACHABLE, with the TE_AUTH_REQUIRED detail', async () => {
    const target = new CoreEngine({ env: {}, authSecret: SECRET });
    await target.init('127.0.0.1');
    const region = target.registerLocalMemory(new Uint8Array(4096));
    const api = new TransferEngine({ env: QUIET });
    try {
      assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      const buf = new Uint8Array(4096);
      assert.equal(api.registerMemory(buf, buf.length), 0);
      assert.equal(await api.transferSyncWrite(target.segmentName, api.getBufferAddress(buf), region, 16), ERR_PEER_UNREACHABLE);
      assert.equal(api.getLastError()!.code, ErrorCode.AUTH_REQUIRED);
      assert.equal(api.getLastError()!.codeName, 'ERR_PEER_UNREACHABLE');
      assert.equal(await api.sendProbe(target.segmentName), ERR_PEER_UNREACHABLE);
      assert.equal(api.getLastError()!.code, ErrorCode.AUTH_REQUIRED);
    } finally {
      await api.close();
      await target.close();
    }
  });
});

describe('the argument count is the count given', () => {
  it('arity() counts the arguments object it is given', () => {
    function f(..._args: unknown[]): void {
      arity('f', arguments, 1, 2);
    }
    assert.throws(() => f(), { name: 'TypeError', message: 'f() takes 1 to 2 arguments (0 given)' });
    assert.throws(() => f(1, 2, 3), { name: 'TypeError', message: 'f() takes 1 to 2 arguments (3 given)' });
    f(1);
    f(1, 2);
    // A count in place of the arguments object does not compile: a literal count would pass whatever the caller gave.
    // @ts-expect-error a number is not IArguments
    const never = (): void => arity('f', 5, 0, 1);
    void never;
  });

  it('transferSync and the batch calls refuse one argument too many, and say how many were given', async () => {
    const e = new TransferEngine({ env: QUIET });
    type Loose = (...args: unknown[]) => Promise<number>;
    const call = (name: keyof TransferEngine, ...args: unknown[]): Promise<number> => (e[name] as unknown as Loose).call(e, ...args);
    const W = TransferOpcode.WRITE;
    // The sync calls take one more than the seed's: the options form ({ signal, timeoutMs }).
    await assert.rejects(call('transferSync', 'h:1', 1, 1, 1, W, null, '', {}, 'extra'), { name: 'TypeError', message: 'transferSync() takes 5 to 8 arguments (9 given)' });
    await assert.rejects(call('transferSync', 'h:1', 1, 1, 1), { name: 'TypeError', message: 'transferSync() takes 5 to 8 arguments (4 given)' });
    await assert.rejects(call('batchTransferSync', 'h:1', [1], [1], [1], W, null, '', {}, 'extra'), { name: 'TypeError', message: /takes 5 to 8 arguments \(9 given\)/ });
    await assert.rejects(call('transferSyncRead', 'h:1', 1, 1, 1, '', {}, 'extra'), { name: 'TypeError', message: /takes 4 to 6 arguments \(7 given\)/ });
    await assert.rejects(call('batchTransferAsync', 'h:1', [1], [1], [1], W, '', {}, 'extra'), { name: 'TypeError', message: /takes 5 to 7 arguments \(8 given\)/ });
    await assert.rejects(call('transferSubmitRead', 'h:1', 1, 1, 1, '', {}, 'extra'), { name: 'TypeError', message: /takes 4 to 6 arguments \(7 given\)/ });
    // Seven arguments are the seed's full form of transferSync, eight ours: past the count check, they fail as data (not initialized).
    assert.ok((await call('transferSync', 'h:1', 1, 1, 1, W, null, '')) < 0);
    assert.ok((await call('transferSync', 'h:1', 1, 1, 1, W, null, '', { timeoutMs: 10 })) < 0);
  });
});
