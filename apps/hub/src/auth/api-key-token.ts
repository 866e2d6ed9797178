import { randomBytes } from 'node:crypto';

const API_KEY_RE = /^[0-9a-f]{64}$/;

/** A new API key: 32 random bytes as 64 hex chars. Only its hash is ever stored. */
export function generateApiKey(): string {
  return randomBytes(32).toString('hex');
}

/** Whether a bearer token has the shape of an API key (as opposed to a JWT). */
export function looksLikeApiKey(token: string): boolean {
  return API_KEY_RE.test(token);
}

/** The first characters shown in listings so people can tell keys apart. */
export function apiKeyPrefix(token: string): string {
  return token.slice(0, 8);
}
