import { describe, expect, it } from 'vitest';
import type { NonceCache } from './nonce-cache.js';

// Imported by adapters' tests only (subpath `@graft/protocol/nonce-cache-contract`), never by runtime code.

/** What an adapter's test supplies to {@link nonceCacheContract}: a fresh cache and control of its clock. */
export interface NonceCacheHarness {
  cache: NonceCache;
  /** The cache's notion of now, in Unix seconds. */
  nowSecs(): number;
  /** Lets `secs` seconds pass for the cache (a fake clock, or a real sleep for an external store). */
  advance(secs: number): Promise<void>;
  close?(): Promise<void>;
}

/** Behaviour every NonceCache adapter must have; windows are a few seconds so a real-clock adapter stays fast. */
export function nonceCacheContract(name: string, make: () => NonceCacheHarness | Promise<NonceCacheHarness>): void {
  describe(`NonceCache contract: ${name}`, () => {
    const withHarness = (fn: (h: NonceCacheHarness) => Promise<void>) => async () => {
      const h = await make();
      try {
        await fn(h);
      } finally {
        await h.close?.();
      }
    };

    it(
      'reports a nonce as seen only from its second use',
      withHarness(async ({ cache, nowSecs }) => {
        const exp = nowSecs() + 60;
        expect(await cache.seen('broker-a', 'nonce-0000000001', exp)).toBe(false);
        expect(await cache.seen('broker-a', 'nonce-0000000001', exp)).toBe(true);
        expect(await cache.seen('broker-a', 'nonce-0000000001', exp)).toBe(true);
      }),
    );

    it(
      'keeps brokers and nonces apart',
      withHarness(async ({ cache, nowSecs }) => {
        const exp = nowSecs() + 60;
        expect(await cache.seen('broker-a', 'nonce-0000000001', exp)).toBe(false);
        expect(await cache.seen('broker-b', 'nonce-0000000001', exp)).toBe(false);
        expect(await cache.seen('broker-a', 'nonce-0000000002', exp)).toBe(false);
        // Naive concatenation would make these two pairs one key.
        expect(await cache.seen('broker-a1', '2345678901234567', exp)).toBe(false);
        expect(await cache.seen('broker-a', '12345678901234567', exp)).toBe(false);
      }),
    );

    it(
      'remembers a nonce until it expires, then accepts it again',
      withHarness(async ({ cache, nowSecs, advance }) => {
        const exp = nowSecs() + 2;
        expect(await cache.seen('broker-a', 'nonce-0000000001', exp)).toBe(false);
        await advance(1);
        expect(await cache.seen('broker-a', 'nonce-0000000001', exp)).toBe(true);
        await advance(3);
        expect(await cache.seen('broker-a', 'nonce-0000000001', nowSecs() + 60)).toBe(false);
        expect(await cache.seen('broker-a', 'nonce-0000000001', nowSecs() + 60)).toBe(true);
      }),
    );

    it(
      'lets exactly one of many concurrent first uses through',
      withHarness(async ({ cache, nowSecs }) => {
        const exp = nowSecs() + 60;
        const results = await Promise.all(Array.from({ length: 20 }, () => cache.seen('broker-a', 'nonce-concurrent', exp)));
        expect(results.filter((seen) => !seen)).toHaveLength(1);
      }),
    );
  });
}
