// @ts-check
/**
 * Mooncake's Transfer Engine quick start, receiver side ("Start Transfer
 * Engine Receiver"; docs/interop.md, "Sources"), ported line by line. Mooncake's
 * example sends the buffer info over a zmq PUSH socket;
 * here it goes to a small JSON file (and a stdout line) instead.
 *
 *   npm run build && node examples/quickstart-receiver.mjs [info-file]
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TransferEngine } from 'transfer-engine';

const INFO_FILE = process.argv[2] ?? join(tmpdir(), 'transfer-engine-quickstart.json');

async function main() {
  const HOSTNAME = 'localhost'; // localhost for simple demo
  const METADATA_SERVER = 'P2PHANDSHAKE'; // [P2PHANDSHAKE, ...]
  const PROTOCOL = 'tcp'; // tcp only on this host
  const DEVICE_NAME = ''; // unused by tcp

  // Initialize server engine
  const serverEngine = new TransferEngine();
  let retValue = await serverEngine.initialize(HOSTNAME, METADATA_SERVER, PROTOCOL, DEVICE_NAME);
  if (retValue !== 0) throw new Error(`initialize failed: ${serverEngine.getLastError()?.message}`);
  const sessionId = `${HOSTNAME}:${serverEngine.getRpcPort()}`;

  // Allocate memory on server side (1MB buffer)
  const serverBuffer = new Uint8Array(1024 * 1024); // np.zeros(1024 * 1024, dtype=np.uint8)
  const serverLen = serverBuffer.byteLength; // server_buffer.nbytes

  // Register memory with the engine
  retValue = serverEngine.registerMemory(serverBuffer, serverLen);
  if (retValue !== 0) {
    console.log('Mooncake memory registration failed.');
    throw new Error('Mooncake memory registration failed.');
  }
  // Node has no raw pointers: the registered buffer's address plays server_buffer.ctypes.data.
  const serverPtr = serverEngine.getBufferAddress(serverBuffer);

  console.log(`Server initialized with session ID: ${sessionId}`);
  console.log(`Server buffer address: ${serverPtr}, length: ${serverLen}`);

  // Send buffer info to client (written whole, then renamed: a reader never sees half a file)
  const bufferInfo = { session_id: sessionId, ptr: serverPtr, len: serverLen };
  writeFileSync(`${INFO_FILE}.tmp`, JSON.stringify(bufferInfo));
  renameSync(`${INFO_FILE}.tmp`, INFO_FILE);
  console.log(JSON.stringify(bufferInfo));
  console.log(`Buffer information sent to client (${INFO_FILE})`);

  // Keep server running
  console.log('Press Ctrl+C to exit...');
  await new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  console.log('\nShutting down server...');
  // Not in Mooncake's example: show what the sender left in the buffer.
  let ones = 0;
  for (const b of serverBuffer) if (b === 1) ones++;
  console.log(`Buffer holds ${ones} of ${serverLen} bytes set to 1`);

  // Cleanup
  retValue = serverEngine.unregisterMemory(serverPtr);
  if (retValue !== 0) {
    console.log('Mooncake memory deregistration failed.');
    throw new Error('Mooncake memory deregistration failed.');
  }
  rmSync(INFO_FILE, { force: true });
  await serverEngine.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
