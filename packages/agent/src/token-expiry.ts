/** How long before its expiry a token is exchanged for a fresh one. */
export const REFRESH_WINDOW_MS = 60_000;

/**
 * The expiry of a JWT in epoch milliseconds, read from its `exp` claim without verifying the
 * signature (the hub verifies; the agent only needs to know when to refresh). Null when the
 * token is not a JWT or carries no numeric `exp`.
 */
export function tokenExpiry(token: string): number | null {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[1] === undefined) return null;
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (typeof claims !== 'object' || claims === null) return null;
  const exp = (claims as { exp?: unknown }).exp;
  return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : null;
}

/** Whether a token expires within `windowMs` of `nowMs` (false when its expiry is unknown). */
export function needsRefresh(token: string, nowMs: number, windowMs = REFRESH_WINDOW_MS): boolean {
  const exp = tokenExpiry(token);
  return exp !== null && exp - nowMs <= windowMs;
}
