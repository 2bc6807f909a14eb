/**
 * Fake peers for initiator tests: a handshake port answering with a descriptor
 * we write, and a data port whose behaviour each test decides, written with
 * net.createServer on 127.0.0.1. Used where a real engine cannot misbehave on
 * purpose (test/badinput-client.test.ts) or where the peer must look like
 * Mooncake (no engine id; test/engine-identity.test.ts).
 */
import net from 'node:net';
import { encodeSegmentDesc, type SegmentDesc } from '../src/codec/descriptor.js';
import { HandshakeFrameDecoder, encodeHandshakeFrame, type HandshakeFrame } from '../src/codec/handshake.js';

export const OK_FRAME = Buffer.from([0x00, 0x00, 0x00, 0x00, 0x56, 0x54, 0x43, 0x4d]);
export const REJECT_FRAME = Buffer.from([0x01, 0x00, 0x00, 0x00, 0x56, 0x54, 0x43, 0x4d]);
export const BAD_MAGIC_FRAME = Buffer.from([0x00, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef]);
/** The fake peer's one published buffer. */
export const REMOTE_BASE = 0x2000_0000_0000n;
export const REMOTE_LEN = 64n * 1024n * 1024n;


export interface Req {
  size: number;
  addr: bigint;
  write: boolean;
  v2: boolean;
}

/**
 * The fake data server's view of one connection: parses request headers (and
 * consumes WRITE bodies unless told to stop) and hands each request to the test.
 */
export class FakeConn {
  private buf = Buffer.alloc(0);
  private bodyLeft = 0;
  /** Bytes of WRITE bodies received on this connection. */
  bodyBytes = 0;
  closed = false;

  constructor(
    readonly sock: net.Socket,
    private readonly onRequest: (c: FakeConn, r: Req) => void,
  ) {
    sock.on('data', (d: Buffer) => this.push(d));
    sock.on('error', () => {
      /* the initiator may reset us */
    });
    sock.on('close', () => {
      this.closed = true;
    });
  }

  private push(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    for (;;) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, this.buf.length);
        this.bodyLeft -= take;
        this.bodyBytes += take;
        this.buf = this.buf.subarray(take);
        if (this.bodyLeft > 0 || take === 0) return;
        continue;
      }
      if (this.buf.length < 24) return;
      const h = this.buf.subarray(0, 24);
      this.buf = this.buf.subarray(24);
      const op = h[16]!;
      const r: Req = { size: Number(h.readBigUInt64LE(0)), addr: h.readBigUInt64LE(8), write: (op & 0x7f) === 1, v2: (op & 0x80) !== 0 };
      if (r.write) this.bodyLeft = r.size;
      this.onRequest(this, r);
      if (this.sock.destroyed) return;
    }
  }
}

export interface FakePeer {
  name: string;
  rpcPort: number;
  dataPort: number;
  conns: FakeConn[];
  /** Metadata requests answered so far. */
  fetches: number;
  close(): Promise<void>;
}

export function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve((server.address() as net.AddressInfo).port));
  });
}

export function closeServer(server: net.Server, socks: Iterable<net.Socket>): Promise<void> {
  for (const s of socks) s.destroy();
  return new Promise((r) => server.close(() => r()));
}

/** A fake RPC port: `answer` decides what to send back for each frame. */
export async function fakeRpc(answer: (frame: HandshakeFrame, sock: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const socks = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    sock.on('error', () => {});
    const dec = new HandshakeFrameDecoder();
    sock.on('data', (d: Buffer) => {
      const f = dec.push(d);
      if (f) answer(f, sock);
    });
  });
  const port = await listen(server);
  return { port, close: () => closeServer(server, socks) };
}

/**
 * A fake Mooncake peer: a handshake port that publishes a v2 tcp descriptor
 * pointing at a fake data port whose behaviour is `onRequest`.
 */
export async function fakePeer(
  onRequest: (c: FakeConn, r: Req) => void,
  onConnect?: (c: FakeConn) => void,
  /** Changes to the published descriptor, asked at each fetch (default: one 64 MiB buffer at REMOTE_BASE, no engine id). */
  describe: (d: SegmentDesc) => SegmentDesc = (d) => d,
): Promise<FakePeer> {
  const conns: FakeConn[] = [];
  const data = net.createServer((sock) => {
    const c = new FakeConn(sock, onRequest);
    conns.push(c);
    onConnect?.(c);
  });
  const dataPort = await listen(data);
  let name = '';
  const peer: FakePeer = { name, rpcPort: 0, dataPort, conns, fetches: 0, close: async () => {} };
  const rpc = await fakeRpc((f, sock) => {
    peer.fetches++;
    const desc = encodeSegmentDesc(
      describe({
        name,
        protocol: 'tcp',
        tcpDataPort: dataPort,
        tcpProtoVersion: 2,
        buffers: [{ name, addr: REMOTE_BASE, length: REMOTE_LEN }],
      }),
    );
    sock.end(encodeHandshakeFrame(f.type, `${desc}\n`));
  });
  name = `127.0.0.1:${rpc.port}`;
  peer.name = name;
  peer.rpcPort = rpc.port;
  peer.close = async () => {
    await Promise.all([rpc.close(), closeServer(data, conns.map((c) => c.sock))]);
  };
  return peer;
}
