/**
 * What the engine tells the TCP client: its options, and the address of each
 * peer it sends to. Kept apart from client.ts so that peer.ts and lane.ts can
 * use them without importing the client (no import circle); client.ts
 * re-exports both.
 */
import type { TlsSettings } from '../../tls.js';

export interface TcpClientOptions {
  /**
   * Our shared secret: every lane authenticates (src/auth.ts) before its first
   * request, and a peer that does not is TE_AUTH_FAILED.
   */
  authSecret?: Uint8Array | undefined;
  /** Mutual TLS on every lane (src/tls.ts); undefined: clear text. */
  tls?: TlsSettings | undefined;
  lanesPerPeer: number;
  /** No progress for this long ends the lane's slices in TIMEOUT. */
  timeoutMs: number;
  connectTimeoutMs: number;
  /** TCP keepalive on lanes after this long idle (TE_TCP_KEEPALIVE_MS); 0 or absent: off. */
  keepAliveMs?: number;
  /**
   * After PAUSE_AFTER (peer.ts) connect failures in a row, a peer is paused
   * this long: slices to it fail at once (Failure.PAUSED) instead of
   * connecting again; then one connection probes it. 0: never paused.
   */
  peerPauseMs: number;
}

export interface PeerAddress {
  host: string;
  port: number;
  /** Speak v2 (acknowledged writes). */
  v2: boolean;
  /** Source address of the data connections (MC_CUSTOM_TOPO_JSON's preferred NIC); default: the OS picks. */
  localAddress?: string;
  /** Lanes for our file requests: kept apart, with FILE_WINDOW_BYTES (lane.ts) each, and slices not cut to WIRE_MAX. */
  files?: boolean;
  /**
   * The peer engine's id (its descriptor's engine_id): each lane checks that
   * this engine answers (src/codec/wire.ts, engine identity) before its first
   * request; another one is TE_PEER_CHANGED. Absent for Mooncake peers.
   */
  engineId?: number;
  /**
   * For peers without an engine id (Mooncake): called before a lane opens
   * while no other lane to the peer is connected; the lane takes requests
   * only once it resolves. It rejects when the peer's descriptor changed or
   * cannot be fetched: whoever holds the port now is not known to be the peer.
   */
  revalidate?: () => Promise<void>;
}

/**
 * Largest wire request the client sends for memory: bigger slices go as
 * several requests, so that each lane keeps a few in flight within its window
 * (lane.ts, LANE_WINDOW_BYTES). Cut by src/pieces.ts.
 */
export const WIRE_MAX = 256 * 1024;
