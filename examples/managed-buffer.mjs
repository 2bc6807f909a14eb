// @ts-check
/**
 * The "Managed Buffer Allocation" example of Mooncake's Python API reference:
 * a buffer from the engine's
 * buddy allocator, written and read back by address, then freed.
 *
 *   node examples/managed-buffer.mjs
 */
import { TransferEngine } from 'transfer-engine';

async function main() {
  const engine = new TransferEngine();
  if ((await engine.initialize('localhost', 'P2PHANDSHAKE', 'tcp', '')) !== 0) {
    throw new Error(`initialize failed: ${engine.getLastError()?.message}`);
  }

  // Allocate managed buffer
  const bufferSize = 1024 * 1024; // 1MB
  const bufferAddr = engine.allocateManagedBuffer(bufferSize);

  let ok = false;
  if (bufferAddr === 0) {
    console.log('Failed to allocate buffer');
  } else {
    // Use the buffer
    const testData = Buffer.from('Test data for managed buffer');
    engine.writeBytesToBuffer(bufferAddr, testData, testData.length);

    // Read back
    const readData = engine.readBytesFromBuffer(bufferAddr, testData.length);
    console.log(`Read data: ${readData?.toString()}`);
    ok = readData !== null && readData.equals(testData);

    // Free the buffer when done
    const ret = engine.freeManagedBuffer(bufferAddr, bufferSize);
    console.log(`Freed: ${ret}`);
    ok &&= ret === 0;
    // A freed buffer is no longer usable (a negative code, not a crash).
    console.log(`Read after free: ${engine.readBytesFromBuffer(bufferAddr, 1) === null ? 'refused' : 'allowed'} (${engine.getLastError()?.message})`);
  }
  await engine.close();
  if (!ok) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
