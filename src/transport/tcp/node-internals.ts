/**
 * The only module of the TCP transport that reaches into Node's internals.
 * It uses two, both for the data server (connection.ts); each is probed once,
 * at its first use, and where this Node does not have it a path through
 * public APIs is taken instead. `nodeInternals()` tells which are in use, and
 * test/tcp-node-internals.test.ts fails on a Node version where one no longer
 * works, so that a silent fall back to the slower path gets noticed.
 *
 * 1. Handle takeover, for zero-copy reads. A socket reads into caller memory
 *    (`onread`) only when it is created with that option: net.connect takes
 *    it, but a server's accepted sockets are created by Node without it. So
 *    each accepted socket's libuv handle (`_handle`) is given to a new
 *    net.Socket made with `onread` and the undocumented `handle` option, and
 *    the accepted Socket object lets go of it. Public fallback: read the
 *    accepted socket through 'data' events and copy each chunk into the
 *    buffers `onread` would have been handed: the same bytes in the same
 *    order, at the cost of one more copy of every byte.
 * 2. The handle's `writeQueueSize`: the bytes libuv has not yet handed to the
 *    kernel. `writableLength` counts a write until its callback runs, which
 *    for one large READ reply is only at its end; the queue size shrinks as a
 *    slow reader takes the bytes, which the stall check counts as progress.
 *    Public fallback: `writableLength` alone (one large reply to a reader
 *    slower than the stall timeout can then be taken for a stall).
 *
 * Restarting reads needs no internal: returning false from the `onread`
 * callback is an implicit pause(), and resume() reads again (Node's
 * documentation of the `onread` option, doc/api/net.md).
 */
import net from 'node:net';

/** The reads of an accepted connection, as `onread` delivers them. */
export interface SocketReader {
  /** The buffer the next read goes into. */
  nextBuffer(): Uint8Array;
  /** `n` bytes were read into `buf` (the last nextBuffer()). Returning false stops reading until restart(). */
  onRead(n: number, buf: Uint8Array): boolean;
}

/** Which internals this process uses; undefined: not probed yet (no connection accepted, no stall check run). */
export interface NodeInternalsReport {
  /** Accepted sockets are taken over into sockets reading through `onread`; false: 'data' events, copied. */
  handleTakeover: boolean | undefined;
  /**
   * 'data' chunks served by copying them: reads on the public path, or on a
   * taken-over socket whose `onread` this Node ignored (none should come).
   */
  copiedChunks: number;
  /** The stall check counts the handle's writeQueueSize; false: writableLength alone. */
  writeQueueSize: boolean | undefined;
}

interface InternalSocket {
  _handle?: unknown;
}

let takeover: boolean | undefined;
let queueSize: boolean | undefined;
let copiedChunks = 0;
let publicOnly = false;

export function nodeInternals(): NodeInternalsReport {
  return { handleTakeover: takeover, copiedChunks, writeQueueSize: queueSize };
}

/**
 * Take the public paths, as on a Node without the internals (for tests of
 * those paths). The probes' results are left alone.
 */
export function usePublicPathsOnly(on: boolean): void {
  publicOnly = on;
}

/** An accepted connection, read as `onread` would. */
export class AcceptedSocket {
  /** The rest of a 'data' chunk that arrived after the reader stopped (public path only). */
  private rest: Buffer | null = null;

  constructor(
    readonly sock: net.Socket,
    private readonly reader: SocketReader,
  ) {
    // On the zero-copy path no 'data' event ever comes; if one does, the bytes are served all the same.
    sock.on('data', (chunk: Buffer) => {
      copiedChunks++;
      this.feed(chunk);
    });
  }

  /** Read again after the reader returned false. */
  restart(): void {
    const rest = this.rest;
    this.rest = null;
    if (rest && !this.feed(rest)) return;
    this.sock.resume();
  }

  /** Output bytes not yet taken by the kernel. */
  unsent(): number {
    return unsentBytes(this.sock);
  }

  /** Hand a chunk to the reader as reads into the buffers it picks; returns false when it stopped. */
  private feed(chunk: Buffer): boolean {
    let off = 0;
    while (off < chunk.length) {
      const dst = this.reader.nextBuffer();
      const n = Math.min(dst.length, chunk.length - off);
      dst.set(chunk.subarray(off, off + n));
      off += n;
      if (!this.reader.onRead(n, dst) || n === 0) {
        if (off < chunk.length) this.rest = chunk.subarray(off);
        this.sock.pause();
        return false;
      }
    }
    return true;
  }
}

/**
 * The socket to serve an accepted connection on, reading into the buffers
 * `reader` picks: a takeover of its handle where this Node allows it and
 * `zeroCopy` (not TLS), else the accepted socket itself. Null when the connection was gone before it could be
 * taken over (the accepted socket is destroyed).
 */
export function acceptSocket(accepted: net.Socket, writableHighWaterMark: number, reader: SocketReader, zeroCopy = true): AcceptedSocket | null {
  // A TLS socket (zeroCopy false) decrypts into buffers of its own: its bytes come as 'data' and are copied.
  if (zeroCopy && !publicOnly && takeover !== false) {
    const handle = (accepted as InternalSocket)._handle;
    if (handle === null) {
      accepted.destroy();
      return null;
    }
    const sock = takenOver(handle, writableHighWaterMark, reader);
    takeover = sock !== null;
    if (sock) {
      (accepted as InternalSocket)._handle = null; // the original Socket object lets go of the handle...
      accepted.destroy(); // ...and is released, so server.close() does not wait for it
      return new AcceptedSocket(sock, reader);
    }
  }
  if (accepted.destroyed) return null;
  return new AcceptedSocket(accepted, reader);
}

/** A new socket on `handle` reading through `onread`, or null if this Node does not let a socket be made on a handle. */
function takenOver(handle: unknown, writableHighWaterMark: number, reader: SocketReader): net.Socket | null {
  if (typeof handle !== 'object' || handle === null || typeof (handle as { readStart?: unknown }).readStart !== 'function') return null;
  const sockOptions = {
    handle,
    readable: true,
    writable: true,
    writableHighWaterMark,
    onread: {
      buffer: (): Uint8Array => reader.nextBuffer(),
      callback: (n: number, buf: Uint8Array): boolean => reader.onRead(n, buf),
    },
  } as unknown as net.SocketConstructorOpts;
  const sock = new net.Socket(sockOptions);
  if ((sock as InternalSocket)._handle === handle) return sock;
  sock.destroy(); // it never held the handle: the accepted socket still does
  return null;
}

/** Output bytes of `sock` not yet taken by the kernel: what its stream holds, plus libuv's queue where readable. */
export function unsentBytes(sock: net.Socket): number {
  const n = sock.writableLength;
  if (publicOnly || queueSize === false) return n;
  const handle = (sock as InternalSocket)._handle;
  if (handle === undefined) {
    queueSize = false; // no handle property on this Node
    return n;
  }
  if (handle === null) return n; // closed
  const q = (handle as { writeQueueSize?: unknown }).writeQueueSize;
  queueSize ??= typeof q === 'number';
  return queueSize && typeof q === 'number' ? n + q : n;
}
