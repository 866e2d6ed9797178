import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { nonceCacheContract } from '@graft/protocol/nonce-cache-contract';
import { expect, inject, it } from 'vitest';
import { RedisNonceCache } from './redis-nonce-cache.js';

// A real Redis keeps real time: the harness's clock is the wall clock and advancing sleeps.
nonceCacheContract('RedisNonceCache', async () => {
  const cache = new RedisNonceCache(inject('redisUrl'), { prefix: `test-${randomUUID()}` });
  await cache.ready();
  return {
    cache,
    nowSecs: () => Math.floor(Date.now() / 1000),
    advance: (secs) => delay(secs * 1000),
    close: () => cache.close(),
  };
});

it('is shared: a nonce used on one replica is a replay on another with the same prefix', async () => {
  const prefix = `test-${randomUUID()}`;
  const a = new RedisNonceCache(inject('redisUrl'), { prefix });
  const b = new RedisNonceCache(inject('redisUrl'), { prefix });
  try {
    await Promise.all([a.ready(), b.ready()]);
    const exp = Math.floor(Date.now() / 1000) + 60;
    expect(await a.seen('broker-1', 'nonce-shared-0001', exp)).toBe(false);
    expect(await b.seen('broker-1', 'nonce-shared-0001', exp)).toBe(true);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

it('refuses to answer (rejects) while Redis is unreachable, rather than letting a replay through', async () => {
  const cache = new RedisNonceCache('redis://127.0.0.1:1', { prefix: 'unreachable' });
  try {
    await expect(cache.seen('broker-1', 'nonce-offline-001', Math.floor(Date.now() / 1000) + 60)).rejects.toThrow();
  } finally {
    await cache.close();
  }
});
