import { createHash } from 'node:crypto';

/**
 * SHA-256 of a bearer-style secret (API key, broker join token): what the database stores and
 * looks tokens up by, so a leaked table reveals no usable token.
 */
export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
