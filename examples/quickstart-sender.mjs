// @ts-check
/**
 * Mooncake's Transfer Engine quick start, sender side ("Start Transfer Engine
 * Sender"; docs/interop.md, "Sources"), ported
 * line by line: ten 1 MiB writes of ones into the receiver's buffer.
 *
 *   node examples/quickstart-sender.mjs [info-file]     (with the receiver running)
 */
import { TransferEngine } from 'transfer-engine';
import { DEFAULT_INFO_FILE, recvBufferInfo } from './buffer-info.mjs';

async function main() {
  // Wait for buffer info from server
  console.log('Waiting for server buffer information...');
  const bufferInfo = await recvBufferInfo(process.argv[2] ?? DEFAULT_INFO_FILE);
  const serverSessionId = bufferInfo.session_id;
  const serverPtr = bufferInfo.ptr;
  const serverLen = bufferInfo.len;
  console.log(`Received server info - Session ID: ${serverSessionId}`);
  console.log(`Server buffer address: ${serverPtr}, length: ${serverLen}`);

  // Initialize client engine
  const HOSTNAME = 'localhost'; // localhost for simple demo
  const METADATA_SERVER = 'P2PHANDSHAKE';
  const PROTOCOL = 'tcp';
  const DEVICE_NAME = '';

  const clientEngine = new TransferEngine();
  let retValue = await clientEngine.initialize(HOSTNAME, METADATA_SERVER, PROTOCOL, DEVICE_NAME);
  if (retValue !== 0) throw new Error(`initialize failed: ${clientEngine.getLastError()?.message}`);
  const sessionId = `${HOSTNAME}:${clientEngine.getRpcPort()}`;

  // Allocate and initialize client buffer (1MB)
  const clientBuffer = new Uint8Array(1024 * 1024).fill(1); // np.ones(1024 * 1024, dtype=np.uint8)
  const clientLen = clientBuffer.byteLength;

  // Register memory with the engine
  retValue = clientEngine.registerMemory(clientBuffer, clientLen);
  if (retValue !== 0) {
    console.log('Mooncake memory registration failed.');
    throw new Error('Mooncake memory registration failed.');
  }
  const clientPtr = clientEngine.getBufferAddress(clientBuffer); // client_buffer.ctypes.data

  console.log(`Client initialized with session ID: ${sessionId}`);

  // Transfer data from client to server
  console.log('Transferring data to server...');
  let failed = 0;
  for (let i = 0; i < 10; i++) {
    const ret = await clientEngine.transferSyncWrite(
      serverSessionId,
      clientPtr,
      serverPtr,
      Math.min(clientLen, serverLen), // Transfer minimum of both lengths
    );

    if (ret >= 0) {
      console.log('Transfer successful!');
    } else {
      console.log(`Transfer failed! (${ret}: ${clientEngine.getLastError()?.message})`);
      failed++;
    }
  }

  // Cleanup
  retValue = clientEngine.unregisterMemory(clientPtr);
  if (retValue !== 0) {
    console.log('Mooncake memory deregistration failed.');
    throw new Error('Mooncake memory deregistration failed.');
  }
  await clientEngine.close(); // Python frees the engine at exit; Node needs its sockets closed
  if (failed > 0) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
