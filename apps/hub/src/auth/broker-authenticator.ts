import type { Database } from '@graft/db';
import { type ErrorCode, GraftError, type NonceCache, readBrokerId, type SignatureRejection, splitRequestTarget, verifySignedRequest } from '@graft/protocol';
import type { Kysely } from 'kysely';
import type { Counter } from 'prom-client';
import type { SecretBox } from '../domain/secret-box.js';
import type { BrokerPrincipal } from './principal.js';

/** Each way a signed request can fail has its own error code (and metric label). */
const REJECTION_CODE: Record<SignatureRejection, ErrorCode> = {
  missing_headers: 'signature_missing',
  malformed_headers: 'signature_malformed',
  clock_skew: 'clock_skew',
  bad_signature: 'signature_invalid',
  replayed_nonce: 'replayed_request',
};

const REJECTION_MESSAGE: Record<SignatureRejection, string> = {
  missing_headers: 'signed request expected: send X-Graft-Broker-Id, X-Graft-Timestamp, X-Graft-Nonce and X-Graft-Signature',
  malformed_headers: 'malformed X-Graft-* signature headers',
  clock_skew: "request timestamp differs from the hub's clock by more than 5 minutes: check the node's clock (NTP)",
  bad_signature: 'signature does not match (wrong or revoked broker secret, or the request was altered)',
  replayed_nonce: 'this signed request was already received (replayed nonce)',
};

/** The seal binding a broker's secret to its broker id (see broker registration). */
export const brokerSecretAad = (brokerId: string): string => `broker:${brokerId}:secret`;

/** What a signed request looks like to the verifier: method, the undecoded target, headers, raw body. */
export interface SignedHttpRequest {
  method: string;
  /** `req.originalUrl`: path and query exactly as sent. */
  target: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
  rawBody: Buffer | undefined;
}

/**
 * Verifies broker → hub requests signed as PROTOCOL.md "Request signing" says, against the
 * broker's current secret and, during a rotation's grace period, its previous one.
 */
export class BrokerAuthenticator {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly box: SecretBox,
    private readonly nonces: NonceCache,
    private readonly rejections: Counter<'reason'>,
  ) {}

  /** The broker that signed the request, or a GraftError with the rejection's own code. */
  async authenticate(req: SignedHttpRequest): Promise<BrokerPrincipal> {
    const brokerId = readBrokerId(req.headers);
    const secrets = brokerId ? await this.secretsOf(brokerId) : [];
    const { path, rawQuery } = splitRequestTarget(req.target);
    const r = await verifySignedRequest({ method: req.method, path, rawQuery, body: req.rawBody, headers: req.headers, secrets, nonceCache: this.nonces }).catch(() => {
      // Only the replay cache can fail here (a shared one whose Redis is away): refuse, never let a possible replay through.
      throw new GraftError('unavailable', 'the replay cache is unreachable: try again shortly');
    });
    if (!r.ok) {
      this.rejections.inc({ reason: r.reason });
      throw new GraftError(REJECTION_CODE[r.reason], REJECTION_MESSAGE[r.reason]);
    }
    return { kind: 'broker', brokerId: r.brokerId };
  }

  private async secretsOf(brokerId: string): Promise<string[]> {
    const row = await this.db
      .selectFrom('brokers')
      .select(['secret_enc', 'previous_secret_enc', 'previous_secret_expires_at'])
      .where('id', '=', brokerId)
      .executeTakeFirst();
    // An unknown or not yet joined broker verifies against nothing: a bad signature, which does not reveal which ids exist.
    if (!row?.secret_enc) return [];
    const secrets = [this.box.open(row.secret_enc, brokerSecretAad(brokerId))];
    if (row.previous_secret_enc && row.previous_secret_expires_at && row.previous_secret_expires_at.getTime() > Date.now()) {
      secrets.push(this.box.open(row.previous_secret_enc, brokerSecretAad(brokerId)));
    }
    return secrets;
  }
}
