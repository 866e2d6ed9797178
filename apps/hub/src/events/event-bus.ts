/**
 * Port: how hub components tell each other (and, in cluster mode, other replicas) that something
 * happened, e.g. a log chunk stored for an agent. Owned by its consumers (log readers, ingest).
 * Delivery is best effort and at most once: consumers that must not miss anything recover from
 * Postgres (a log reader re-reads from its last sequence number).
 */
export interface EventBus {
  /** Sends `message` to every current subscriber of `topic`. */
  publish(topic: string, message: Buffer): void;
  /** Calls `handler` for each message on `topic` until the returned function is called. */
  subscribe(topic: string, handler: (message: Buffer) => void): () => void;
  close(): Promise<void>;
}
