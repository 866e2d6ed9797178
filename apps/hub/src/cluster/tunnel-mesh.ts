/**
 * Port: the hub replicas' shared record of which replica holds each broker's tunnel, and a wire
 * between replicas (DESIGN §2, tunnel routing). Owned by the replica router. Ownership is a claim
 * with a time to live, refreshed while the tunnel lives, so a replica that dies without releasing
 * loses its claims by itself; the last claim wins (a broker that reconnects elsewhere moves at once).
 * Frames are delivered at most once, in order between one sender and one receiver.
 */
export interface TunnelMesh {
  /** This replica's id. */
  readonly replicaId: string;
  /** Records that this replica holds these brokers' tunnels, until `ttlMs` pass without another claim. */
  claim(brokerIds: readonly string[], ttlMs: number): Promise<void>;
  /** Forgets this replica's claim on the broker; another replica's newer claim stays. */
  release(brokerId: string): Promise<void>;
  /** The replica holding the broker's tunnel, or null when none claims it. */
  owner(brokerId: string): Promise<string | null>;
  /** Whether a replica is up: it announces itself until it closes, and a crashed one stops within seconds. */
  alive(replicaId: string): Promise<boolean>;
  /** Sends a frame to a replica; dropped when it is gone or unreachable. */
  send(replicaId: string, frame: Buffer): void;
  /** Sets what receives the frames sent to this replica. */
  receive(handler: (frame: Buffer) => void): void;
  close(): Promise<void>;
}
