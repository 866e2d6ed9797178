import type { Logger } from '@graft/log';
import type { NonceCache } from '@graft/protocol';
import { Redis } from 'ioredis';

/**
 * Replay cache shared by every hub replica (cluster mode): a nonce is a key `<prefix>:nonce:<broker>:<nonce>`
 * set with NX and an absolute expiry, so of concurrent first uses on any replicas exactly one wins.
 * While Redis is away the check fails and the signed request is refused (503), never let through:
 * a replica cannot know what the others have seen. Owns its connection.
 */
export class RedisNonceCache implements NonceCache {
  private readonly redis: Redis;

  constructor(url: string, private readonly options: { prefix?: string; log?: Logger } = {}) {
    // Fail fast while disconnected: a broker retries a refused request with backoff.
    this.redis = new Redis(url, { retryStrategy: (n: number) => Math.min(n * 100, 2_000), maxRetriesPerRequest: 1, enableOfflineQueue: false });
    this.redis.on('error', (err: Error) => options.log?.warn('nonce_cache.redis_error', { reason: err.message }));
  }

  /** Resolves once connected (tests; requests work without waiting once the connection is up). */
  async ready(): Promise<void> {
    if (this.redis.status !== 'ready') await new Promise<void>((ok) => this.redis.once('ready', () => ok()));
  }

  async seen(brokerId: string, nonce: string, expiresAtSecs: number): Promise<boolean> {
    // Length prefix: no choice of broker id and nonce can collide with another pair's key.
    const key = `${this.options.prefix ?? 'graft'}:nonce:${brokerId.length}:${brokerId}${nonce}`;
    // EXAT is inclusive of the expiry second in the port's terms: the key lives until the second after.
    const set = await this.redis.set(key, '1', 'EXAT', expiresAtSecs + 1, 'NX');
    return set === null;
  }

  async close(): Promise<void> {
    await (this.redis.status === 'ready' ? this.redis.quit().then(() => undefined) : Promise.resolve(this.redis.disconnect()));
  }
}
