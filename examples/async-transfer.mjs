// @ts-check
/**
 * The "Asynchronous Transfer" example of Mooncake's Python API reference:
 * submit a write, then poll
 * transferCheckStatus until it is final. The remote address comes from the
 * quick-start receiver; the bytes are read back to show they arrived.
 *
 *   node examples/async-transfer.mjs [info-file]        (with the receiver running)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { TransferEngine } from 'transfer-engine';
import { DEFAULT_INFO_FILE, recvBufferInfo } from './buffer-info.mjs';

async function main() {
  const info = await recvBufferInfo(process.argv[2] ?? DEFAULT_INFO_FILE);
  const engine = new TransferEngine();
  if ((await engine.initialize('localhost', 'P2PHANDSHAKE', 'tcp', '')) !== 0) {
    throw new Error(`initialize failed: ${engine.getLastError()?.message}`);
  }

  const data = Buffer.from('Hello, Transfer Engine!');
  const dataLen = data.length;
  const local = new Uint8Array(4096);
  local.set(data);
  engine.registerMemory(local, local.byteLength);
  const localAddr = engine.getBufferAddress(local);
  const remoteAddr = info.ptr; // from the receiver (Mooncake's Python API reference: "from ZMQ or upper-layer inference framework")

  // Submit asynchronous write
  const batchId = await engine.transferSubmitWrite(
    info.session_id, // target hostname
    localAddr, // buffer
    remoteAddr, // peer buffer address
    dataLen, // length
  );

  let ok = false;
  if (batchId < 0) {
    console.log(`Failed to submit transfer with code ${batchId}`);
  } else {
    // Poll for completion
    for (;;) {
      const status = engine.transferCheckStatus(batchId);
      if (status === 1) {
        console.log('Transfer completed successfully');
        ok = true;
        break;
      } else if (status === -1) {
        console.log('Transfer failed');
        break;
      } else if (status === -2) {
        console.log('Transfer timed out');
        break;
      }
      // Transfer still in progress, continue polling
      await sleep(1); // Small delay to avoid busy waiting (and to let I/O run)
    }
  }

  if (ok) {
    // Not in Mooncake's example: read the bytes back from the receiver.
    const back = new Uint8Array(dataLen);
    engine.registerMemory(back, dataLen);
    const ret = await engine.transferSyncRead(info.session_id, engine.getBufferAddress(back), remoteAddr, dataLen);
    const text = Buffer.from(back).toString();
    console.log(`Read back (${ret}): ${text}`);
    ok = ret === 0 && text === data.toString();
  }
  await engine.close();
  if (!ok) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
