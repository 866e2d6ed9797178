import { GraftError } from '@graft/protocol';
import jwt from 'jsonwebtoken';
import type { SigningKeyStore } from './signing-keys.js';

const ISSUER = 'graft-hub';

/** Claims of a user token. */
export interface UserClaims {
  typ: 'user';
  sub: string;
}

/** Claims of an agent token: scoped to one agent of one project. */
export interface AgentClaims {
  typ: 'agent';
  sub: string;
  prj: string;
}

/** What a verified token says. */
export type TokenClaims = UserClaims | AgentClaims;

/** A signed token with its expiry. */
export interface SignedToken {
  token: string;
  expiresAt: Date;
}

/** How many verified tokens to remember; agents re-send the same token on every report. */
const VERIFIED_CACHE_SIZE = 10_000;

/** Signs and verifies HS256 JWTs with the shared, rotatable keys (kid in the header). */
export class JwtService {
  /**
   * Tokens already verified, by their exact text (signature included), until they expire. A JWT
   * is immutable and nothing here revokes one before its expiry, so the answer cannot change.
   */
  private readonly verified = new Map<string, { claims: TokenClaims; expMs: number }>();

  constructor(private readonly keys: SigningKeyStore) {}

  /** Signs claims valid for `ttlSecs`. */
  sign(claims: TokenClaims, ttlSecs: number): SignedToken {
    const key = this.keys.signingKey();
    const token = jwt.sign(claims, key.secret, { algorithm: 'HS256', keyid: key.kid, expiresIn: ttlSecs, issuer: ISSUER });
    return { token, expiresAt: new Date(Date.now() + ttlSecs * 1000) };
  }

  /** Verifies a token; any failure is `unauthorized` with a reason that helps without leaking. */
  async verify(token: string): Promise<TokenClaims> {
    const hit = this.verified.get(token);
    if (hit) {
      if (hit.expMs > Date.now()) return hit.claims;
      this.verified.delete(token);
    }
    const { claims, expMs } = await this.verifyUncached(token);
    if (this.verified.size >= VERIFIED_CACHE_SIZE) {
      const oldest = this.verified.keys().next();
      if (!oldest.done) this.verified.delete(oldest.value);
    }
    this.verified.set(token, { claims, expMs });
    return claims;
  }

  private async verifyUncached(token: string): Promise<{ claims: TokenClaims; expMs: number }> {
    const decoded = jwt.decode(token, { complete: true });
    const kid = decoded && typeof decoded === 'object' ? decoded.header.kid : undefined;
    if (!kid) throw new GraftError('unauthorized', 'invalid bearer token');
    const key = await this.keys.verificationKey(kid);
    if (!key) throw new GraftError('unauthorized', 'token signed with an unknown key');
    let payload: jwt.JwtPayload | string;
    try {
      payload = jwt.verify(token, key.secret, { algorithms: ['HS256'], issuer: ISSUER });
    } catch (err) {
      if (err instanceof jwt.TokenExpiredError) throw new GraftError('unauthorized', 'token expired');
      throw new GraftError('unauthorized', 'invalid bearer token');
    }
    if (typeof payload === 'string' || typeof payload.sub !== 'string' || typeof payload.exp !== 'number') throw new GraftError('unauthorized', 'invalid bearer token');
    const expMs = payload.exp * 1000;
    if (payload.typ === 'user') return { claims: { typ: 'user', sub: payload.sub }, expMs };
    if (payload.typ === 'agent' && typeof payload.prj === 'string') return { claims: { typ: 'agent', sub: payload.sub, prj: payload.prj }, expMs };
    throw new GraftError('unauthorized', 'invalid bearer token');
  }
}
