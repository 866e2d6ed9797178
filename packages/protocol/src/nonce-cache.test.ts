import { describe, expect, it } from 'vitest';
import { MemoryNonceCache } from './nonce-cache.js';
import { type NonceCacheHarness, nonceCacheContract } from './nonce-cache-contract.js';

function memoryHarness(maxEntries?: number): NonceCacheHarness & { cache: MemoryNonceCache } {
  let now = 1_700_000_000;
  const cache = new MemoryNonceCache({ nowSecs: () => now, ...(maxEntries === undefined ? {} : { maxEntries }) });
  return {
    cache,
    nowSecs: () => now,
    advance: async (secs) => {
      now += secs;
    },
  };
}

nonceCacheContract('MemoryNonceCache', () => memoryHarness());

describe('MemoryNonceCache', () => {
  it('still holds a nonce at exactly its expiry second', async () => {
    const { cache, nowSecs, advance } = memoryHarness();
    const exp = nowSecs() + 300;
    await cache.seen('b', 'n1', exp);
    await advance(300);
    expect(await cache.seen('b', 'n1', exp)).toBe(true);
    await advance(1);
    expect(await cache.seen('b', 'n1', nowSecs() + 300)).toBe(false);
  });

  it('prunes expired entries as new ones arrive', async () => {
    const { cache, nowSecs, advance } = memoryHarness();
    for (let i = 0; i < 1000; i++) await cache.seen('b', `old-${i}`, nowSecs() + 10);
    expect(cache.size).toBe(1000);
    await advance(11);
    await cache.seen('b', 'new', nowSecs() + 10);
    expect(cache.size).toBe(1);
  });

  it('evicts the oldest entry when full, never refusing a new nonce', async () => {
    const { cache, nowSecs } = memoryHarness(3);
    const exp = nowSecs() + 300;
    for (const n of ['n1', 'n2', 'n3', 'n4']) expect(await cache.seen('b', n, exp)).toBe(false);
    expect(cache.size).toBe(3);
    expect(await cache.seen('b', 'n4', exp)).toBe(true);
    expect(await cache.seen('b', 'n3', exp)).toBe(true);
    expect(await cache.seen('b', 'n2', exp)).toBe(true);
    expect(await cache.seen('b', 'n1', exp)).toBe(false);
  });
});
