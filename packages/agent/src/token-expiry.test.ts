import { describe, expect, it } from 'vitest';
import { needsRefresh, tokenExpiry } from './token-expiry.js';

/** An unsigned JWT with the given claims (the agent never verifies signatures). */
const jwt = (claims: Record<string, unknown>): string =>
  [Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url'), Buffer.from(JSON.stringify(claims)).toString('base64url'), 'sig'].join('.');

describe('token expiry', () => {
  const now = Date.parse('2026-01-12T10:00:00Z');
  const exp = (msFromNow: number) => jwt({ sub: 'a', exp: Math.floor((now + msFromNow) / 1000) });

  it('reads exp in epoch milliseconds', () => {
    expect(tokenExpiry(jwt({ exp: 1_800_000_000 }))).toBe(1_800_000_000_000);
  });

  it('refreshes within 60 s of expiry and after it, not before', () => {
    expect(needsRefresh(exp(10 * 60_000), now)).toBe(false);
    expect(needsRefresh(exp(61_000), now)).toBe(false);
    expect(needsRefresh(exp(59_000), now)).toBe(true);
    expect(needsRefresh(exp(-5_000), now)).toBe(true);
  });

  it('never refreshes a token whose expiry it cannot read', () => {
    for (const t of ['opaque-api-key', 'a.b', 'a.!!!.c', jwt({ sub: 'a' }), jwt({ exp: 'soon' }), `x.${Buffer.from('[1]').toString('base64url')}.y`]) {
      expect(tokenExpiry(t), t).toBeNull();
      expect(needsRefresh(t, now), t).toBe(false);
    }
  });
});
