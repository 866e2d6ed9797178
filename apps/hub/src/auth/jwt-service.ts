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

/** Signs and verifies HS256 JWTs with the shared, rotatable keys (kid in the header). */
export class JwtService {
  constructor(private readonly keys: SigningKeyStore) {}

  /** Signs claims valid for `ttlSecs`. */
  sign(claims: TokenClaims, ttlSecs: number): SignedToken {
    const key = this.keys.signingKey();
    const token = jwt.sign(claims, key.secret, { algorithm: 'HS256', keyid: key.kid, expiresIn: ttlSecs, issuer: ISSUER });
    return { token, expiresAt: new Date(Date.now() + ttlSecs * 1000) };
  }

  /** Verifies a token; any failure is `unauthorized` with a reason that helps without leaking. */
  async verify(token: string): Promise<TokenClaims> {
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
    if (typeof payload === 'string' || typeof payload.sub !== 'string') throw new GraftError('unauthorized', 'invalid bearer token');
    if (payload.typ === 'user') return { typ: 'user', sub: payload.sub };
    if (payload.typ === 'agent' && typeof payload.prj === 'string') return { typ: 'agent', sub: payload.sub, prj: payload.prj };
    throw new GraftError('unauthorized', 'invalid bearer token');
  }
}
