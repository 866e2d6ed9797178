import { randomUUID } from 'node:crypto';
import type { Logger } from '@graft/log';
import { Redis } from 'ioredis';
import type { TunnelMesh } from './tunnel-mesh.js';

/** Deletes the owner key only if this replica still holds it (a newer claim elsewhere stays). */
const RELEASE_IF_OWNER = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/**
 * Adapter for cluster mode: tunnel owners are keys `<prefix>:tunnel:<brokerId>` with a TTL, and each
 * replica listens on its own pub/sub channel `<prefix>:replica:<id>`. Owns two connections (a
 * subscribing connection can do nothing else). While Redis is away claims and lookups fail (the
 * router treats the broker as unreachable from here, so reconciliation repairs it later), frames are
 * dropped, and the subscription comes back with the connection.
 */
export class RedisTunnelMesh implements TunnelMesh {
  readonly replicaId: string;
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private handler: (frame: Buffer) => void = () => {};
  private readonly prefix: string;

  private readonly presence: NodeJS.Timeout;
  private readonly presenceTtlMs: number;

  constructor(url: string, options: { prefix?: string; replicaId?: string; log?: Logger; presenceTtlMs?: number } = {}) {
    this.replicaId = options.replicaId ?? randomUUID();
    this.prefix = options.prefix ?? 'graft';
    // Fail fast while disconnected rather than queue: a routed command has a deadline anyway.
    this.cmd = new Redis(url, { retryStrategy: (n: number) => Math.min(n * 100, 2_000), maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false });
    this.sub = new Redis(url, { retryStrategy: (n: number) => Math.min(n * 100, 2_000), maxRetriesPerRequest: null });
    for (const conn of [this.cmd, this.sub]) conn.on('error', (err: Error) => options.log?.warn('mesh.redis_error', { reason: err.message }));
    const channel = this.channel(this.replicaId);
    this.sub.on('messageBuffer', (ch: Buffer, message: Buffer) => {
      if (ch.toString('utf8') === channel) this.handler(message);
    });
    this.sub.subscribe(channel).catch((err: unknown) => options.log?.warn('mesh.subscribe_failed', { reason: err instanceof Error ? err.message : String(err) }));
    // Presence: refreshed three times per time to live, so a replica that dies is gone within one TTL.
    this.presenceTtlMs = options.presenceTtlMs ?? 3_000;
    const announce = () => {
      this.cmd.set(this.presenceKey(this.replicaId), '1', 'PX', this.presenceTtlMs).catch(() => {});
    };
    this.cmd.on('ready', announce);
    this.presence = setInterval(announce, Math.max(50, Math.floor(this.presenceTtlMs / 3)));
    this.presence.unref();
  }

  private presenceKey(replicaId: string): string {
    return `${this.prefix}:replica-alive:${replicaId}`;
  }

  async alive(replicaId: string): Promise<boolean> {
    return (await this.cmd.exists(this.presenceKey(replicaId))) === 1;
  }

  private channel(replicaId: string): string {
    return `${this.prefix}:replica:${replicaId}`;
  }

  private key(brokerId: string): string {
    return `${this.prefix}:tunnel:${brokerId}`;
  }

  /** Resolves once both connections are up (tests and start-up; routing works without waiting). */
  async ready(): Promise<void> {
    const up = (c: Redis) => (c.status === 'ready' ? Promise.resolve() : new Promise<void>((ok) => c.once('ready', () => ok())));
    await Promise.all([up(this.cmd), up(this.sub)]);
    await this.cmd.set(this.presenceKey(this.replicaId), '1', 'PX', this.presenceTtlMs);
    // The subscription is sent on connect; a ping after it on the same connection confirms it is in place.
    await this.sub.ping();
  }

  async claim(brokerIds: readonly string[], ttlMs: number): Promise<void> {
    if (brokerIds.length === 0) return;
    const batch = this.cmd.pipeline();
    for (const id of brokerIds) batch.set(this.key(id), this.replicaId, 'PX', Math.max(1, Math.round(ttlMs)));
    const results = await batch.exec();
    const failed = results?.find(([err]) => err !== null);
    if (failed?.[0]) throw failed[0];
  }

  async release(brokerId: string): Promise<void> {
    await this.cmd.eval(RELEASE_IF_OWNER, 1, this.key(brokerId), this.replicaId);
  }

  async owner(brokerId: string): Promise<string | null> {
    return this.cmd.get(this.key(brokerId));
  }

  send(replicaId: string, frame: Buffer): void {
    this.cmd.publish(this.channel(replicaId), frame).catch(() => {
      // At most once: the requester's deadline covers a dropped frame.
    });
  }

  receive(handler: (frame: Buffer) => void): void {
    this.handler = handler;
  }

  async close(): Promise<void> {
    this.handler = () => {};
    clearInterval(this.presence);
    await this.cmd.del(this.presenceKey(this.replicaId)).catch(() => {});
    // quit waits for Redis; while it is away there is nothing to say goodbye to.
    await Promise.allSettled([this.cmd, this.sub].map((c) => (c.status === 'ready' ? c.quit() : Promise.resolve(c.disconnect()))));
  }
}
