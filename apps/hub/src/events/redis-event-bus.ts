import type { Logger } from '@graft/log';
import { Redis } from 'ioredis';
import type { EventBus } from './event-bus.js';

/**
 * Adapter for cluster mode: topics are Redis pub/sub channels (under a key prefix), so every hub
 * replica's subscribers get what any replica publishes. Owns two connections (a subscribing
 * connection can do nothing else). Pub/sub is at most once, as the port says; while Redis is away
 * publishes are dropped and subscriptions come back with the connection (ioredis resubscribes).
 */
export class RedisEventBus implements EventBus {
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly handlers = new Map<string, Set<(message: Buffer) => void>>();

  constructor(
    url: string,
    private readonly options: { prefix?: string; log?: Logger } = {},
  ) {
    // Commands wait for the connection (the offline queue); a publish that cannot go out after one
    // reconnection attempt is dropped (maxRetriesPerRequest), so an outage cannot pile them up.
    const retry = { retryStrategy: (n: number) => Math.min(n * 100, 2_000), maxRetriesPerRequest: 1 };
    this.pub = new Redis(url, retry);
    this.sub = new Redis(url, { ...retry, maxRetriesPerRequest: null });
    for (const conn of [this.pub, this.sub]) conn.on('error', (err: Error) => this.options.log?.warn('events.redis_error', { reason: err.message }));
    this.sub.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      const handlers = this.handlers.get(channel.toString('utf8'));
      if (!handlers) return;
      for (const handler of [...handlers]) {
        try {
          handler(message);
        } catch {
          // A failing subscriber must not keep the message from the others.
        }
      }
    });
  }

  private channel(topic: string): string {
    return `${this.options.prefix ?? 'graft'}:${topic}`;
  }

  publish(topic: string, message: Buffer): void {
    // Fire and forget: delivery is best effort; readers recover from Postgres.
    this.pub.publish(this.channel(topic), message).catch((err: unknown) => this.options.log?.debug('events.publish_dropped', { topic, reason: err instanceof Error ? err.message : String(err) }));
  }

  subscribe(topic: string, handler: (message: Buffer) => void): () => void {
    const channel = this.channel(topic);
    let set = this.handlers.get(channel);
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
      this.sub.subscribe(channel).catch((err: unknown) => this.options.log?.warn('events.subscribe_failed', { topic, reason: err instanceof Error ? err.message : String(err) }));
    }
    const own = (message: Buffer) => handler(message);
    set.add(own);
    return () => {
      const current = this.handlers.get(channel);
      current?.delete(own);
      if (current && current.size === 0) {
        this.handlers.delete(channel);
        this.sub.unsubscribe(channel).catch(() => {});
      }
    };
  }

  async close(): Promise<void> {
    this.handlers.clear();
    await Promise.allSettled([this.pub.quit(), this.sub.quit()]);
  }
}
