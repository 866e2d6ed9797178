import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { Uuid } from './ids.js';
import type { NonceCache } from './nonce-cache.js';

/** Names of the signature headers, as sent; HTTP header names are case-insensitive. */
export const SignatureHeaderName = {
  brokerId: 'X-Graft-Broker-Id',
  timestamp: 'X-Graft-Timestamp',
  nonce: 'X-Graft-Nonce',
  signature: 'X-Graft-Signature',
} as const;

/** Headers covered by the signature, in canonical order (lower-case names). */
export const SIGNED_HEADERS = ['x-graft-broker-id', 'content-type'] as const;

/** Largest accepted difference, in seconds, between the signer's clock and the verifier's. */
export const MAX_CLOCK_SKEW_SECS = 300;

/** Why a signed request was refused; each reason has its own error code and metric label. */
export const SignatureRejection = z.enum(['missing_headers', 'malformed_headers', 'clock_skew', 'bad_signature', 'replayed_nonce']);
/** Why a signed request was refused. */
export type SignatureRejection = z.infer<typeof SignatureRejection>;

/** A request body as signed: bytes, or a string hashed as UTF-8; absent means empty. */
export type SignedBody = Uint8Array | string | null | undefined;

/** The request parts a signature covers, exactly as they travel on the wire. */
export interface CanonicalRequestParts {
  method: string;
  path: string;
  rawQuery: string;
  timestamp: string;
  nonce: string;
  brokerId: string;
  contentType?: string | undefined;
  body?: SignedBody;
}

/** A broker secret: its 32 bytes, or their base64url form (as in the join response and credentials file). */
export type BrokerSecretInput = Buffer | string;

/** Input of {@link signRequest}. */
export interface SignRequestInput {
  method: string;
  /** Path as sent, percent-encoded, without query: e.g. `new URL(...).pathname`. */
  path: string;
  /** Query as sent without the leading `?` (`url.search.slice(1)`); empty or absent if none. */
  rawQuery?: string;
  body?: SignedBody;
  brokerId: string;
  /** The Content-Type the caller sends; required in practice for a non-empty body (fetch would add its own). */
  contentType?: string;
  secret: BrokerSecretInput;
  nowSecs?: number;
  nonce?: string;
}

/** Input of {@link verifySignedRequest}; headers with lower-case names, e.g. Node's `req.headers`. */
export interface VerifySignedRequestInput {
  method: string;
  path: string;
  rawQuery: string;
  body: SignedBody;
  headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Candidate secrets of the broker named by {@link readBrokerId}: current first, then previous within grace. */
  secrets: readonly BrokerSecretInput[];
  nonceCache: NonceCache;
  nowSecs?: number;
  maxSkewSecs?: number;
}

/** Outcome of {@link verifySignedRequest}; `secretIndex` says which candidate secret matched. */
export type SignatureVerification = { ok: true; brokerId: string; secretIndex: number } | { ok: false; reason: SignatureRejection };

const NONCE_RE = /^[A-Za-z0-9_-]{16,64}$/;
const TIMESTAMP_RE = /^(0|[1-9][0-9]{0,11})$/;
const SIGNATURE_RE = /^[A-Za-z0-9_-]{1,128}$/;
const SECRET_RE = /^[A-Za-z0-9_-]{43}$/;

const nowUnixSecs = (): number => Math.floor(Date.now() / 1000);

/** The string that is HMAC'd: see PROTOCOL.md "Request signing" for the exact rules. */
export function canonicalRequest(p: CanonicalRequestParts): string {
  const body = typeof p.body === 'string' ? Buffer.from(p.body, 'utf8') : (p.body ?? new Uint8Array());
  const bodyHash = body.length === 0 ? '' : createHash('sha256').update(body).digest('base64');
  const headerValues = [p.brokerId, p.contentType ?? ''];
  const headers = SIGNED_HEADERS.map((name, i) => `${name}:${(headerValues[i] ?? '').trim()}\n`).join('');
  return `${p.method.toUpperCase()}\n${p.path}\n${p.rawQuery}\n${p.timestamp}\n${p.nonce}\n${headers}${bodyHash}`;
}

/** The 32-byte key of a broker secret given as bytes or base64url; throws on anything else. */
export function brokerSecretKey(secret: BrokerSecretInput): Buffer {
  if (typeof secret === 'string') {
    if (!SECRET_RE.test(secret)) throw new TypeError('broker secret must be 32 bytes as unpadded base64url');
    return Buffer.from(secret, 'base64url');
  }
  if (secret.length !== 32) throw new TypeError('broker secret must be 32 bytes');
  return secret;
}

const hmac = (secret: BrokerSecretInput, canonical: string): string =>
  createHmac('sha256', brokerSecretKey(secret)).update(canonical, 'utf8').digest('base64url');

/** Signs a broker → hub request; returns the four `X-Graft-*` headers to send with it. */
export function signRequest(input: SignRequestInput): Record<string, string> {
  // Catches a full URL or a query left in the path, which would sign something other than what is sent.
  if (!input.path.startsWith('/') || /[?#\s]/.test(input.path)) throw new TypeError(`path must be a bare request path: ${input.path}`);
  const nonce = input.nonce ?? randomBytes(16).toString('base64url');
  if (!NONCE_RE.test(nonce)) throw new TypeError('nonce must be 16-64 base64url characters');
  const timestamp = String(Math.floor(input.nowSecs ?? nowUnixSecs()));
  const canonical = canonicalRequest({ ...input, rawQuery: input.rawQuery ?? '', timestamp, nonce });
  return {
    [SignatureHeaderName.brokerId]: input.brokerId,
    [SignatureHeaderName.timestamp]: timestamp,
    [SignatureHeaderName.nonce]: nonce,
    [SignatureHeaderName.signature]: hmac(input.secret, canonical),
  };
}

/** Splits a raw request target (`req.url`, undecoded) into the path and raw query that were signed. */
export function splitRequestTarget(target: string): { path: string; rawQuery: string } {
  const q = target.indexOf('?');
  return q === -1 ? { path: target, rawQuery: '' } : { path: target.slice(0, q), rawQuery: target.slice(q + 1) };
}

// A value that is present but not a single string (a repeated header) is malformed, never "first wins".
function header(headers: VerifySignedRequestInput['headers'], name: string): string | null | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') return null;
  const t = v.trim();
  return t === '' ? undefined : t;
}

/** The broker id a request claims (lower-cased), so the caller can look up its secrets; null if absent or malformed. */
export function readBrokerId(headers: VerifySignedRequestInput['headers']): string | null {
  const parsed = Uuid.safeParse(header(headers, 'x-graft-broker-id'));
  return parsed.success ? parsed.data : null;
}

function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Verifies a signed broker → hub request. Checks run in this order: headers present, headers well-formed,
 * clock skew, signature against each candidate secret, nonce. The nonce is recorded only once the signature
 * verified, so a forger cannot burn a broker's nonces or fill the cache.
 */
export async function verifySignedRequest(input: VerifySignedRequestInput): Promise<SignatureVerification> {
  const maxSkewSecs = input.maxSkewSecs ?? MAX_CLOCK_SKEW_SECS;
  const values = ['x-graft-broker-id', 'x-graft-timestamp', 'x-graft-nonce', 'x-graft-signature'].map((n) => header(input.headers, n));
  if (values.some((v) => v === undefined)) return { ok: false, reason: 'missing_headers' };
  const [rawBrokerId, timestamp, nonce, signature] = values;
  const brokerId = readBrokerId(input.headers);
  const contentType = header(input.headers, 'content-type');
  if (
    brokerId === null ||
    typeof rawBrokerId !== 'string' ||
    typeof timestamp !== 'string' ||
    typeof nonce !== 'string' ||
    typeof signature !== 'string' ||
    contentType === null ||
    !TIMESTAMP_RE.test(timestamp) ||
    !NONCE_RE.test(nonce) ||
    !SIGNATURE_RE.test(signature)
  ) {
    return { ok: false, reason: 'malformed_headers' };
  }
  const timestampSecs = Number(timestamp);
  if (Math.abs((input.nowSecs ?? nowUnixSecs()) - timestampSecs) > maxSkewSecs) return { ok: false, reason: 'clock_skew' };
  const canonical = canonicalRequest({ ...input, timestamp, nonce, brokerId: rawBrokerId, contentType });
  const secretIndex = input.secrets.findIndex((secret) => constantTimeEqual(hmac(secret, canonical), signature));
  if (secretIndex === -1) return { ok: false, reason: 'bad_signature' };
  // A replay is refused by the skew check once its timestamp is older than the window, so that is how long to remember it.
  if (await input.nonceCache.seen(brokerId, nonce, timestampSecs + maxSkewSecs)) return { ok: false, reason: 'replayed_nonce' };
  return { ok: true, brokerId, secretIndex };
}
