import { describe, expect, it } from 'vitest';
import { MemoryNonceCache } from './nonce-cache.js';
import {
  canonicalRequest,
  readBrokerId,
  type SignatureVerification,
  type SignedBody,
  type SignRequestInput,
  signRequest,
  splitRequestTarget,
  verifySignedRequest,
} from './request-signing.js';

const NOW = 1_700_000_000;
const BROKER_ID = '0b6f4c3e-2a1d-4e5f-9a8b-7c6d5e4f3a2b';
const SECRET = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const PREVIOUS_SECRET = Buffer.alloc(32, 7);
const NONCE = 'AAECAwQFBgcICQoLDA0ODw';

const base: SignRequestInput = {
  method: 'POST',
  path: '/api/v1/brokers/status',
  rawQuery: 'verbose=1&tag=a%20b',
  body: '{"agentId":"a1","phase":"running"}',
  brokerId: BROKER_ID,
  contentType: 'application/json',
  secret: SECRET,
  nowSecs: NOW,
};

type Wire = { method: string; path: string; rawQuery: string; body: SignedBody; headers: Record<string, string | string[] | undefined> };

// What the hub would receive: Node lower-cases header names.
function wire(input: SignRequestInput = base): Wire {
  const headers: Wire['headers'] = {};
  for (const [k, v] of Object.entries(signRequest(input))) headers[k.toLowerCase()] = v;
  if (input.contentType !== undefined) headers['content-type'] = input.contentType;
  return { method: input.method, path: input.path, rawQuery: input.rawQuery ?? '', body: input.body ?? undefined, headers };
}

function verify(w: Wire, over: { secrets?: Buffer[]; nowSecs?: number; cache?: MemoryNonceCache } = {}): Promise<SignatureVerification> {
  const nowSecs = over.nowSecs ?? NOW;
  return verifySignedRequest({
    ...w,
    secrets: over.secrets ?? [SECRET],
    nowSecs,
    nonceCache: over.cache ?? new MemoryNonceCache({ nowSecs: () => nowSecs }),
  });
}

describe('signRequest / verifySignedRequest', () => {
  it('round-trips and names the broker from its header', async () => {
    const w = wire();
    expect(Object.keys(signRequest(base)).sort()).toEqual(['X-Graft-Broker-Id', 'X-Graft-Nonce', 'X-Graft-Signature', 'X-Graft-Timestamp']);
    expect(await verify(w)).toEqual({ ok: true, brokerId: BROKER_ID, secretIndex: 0 });
    expect(readBrokerId(w.headers)).toBe(BROKER_ID);
  });

  it('round-trips a body-less request without content-type (the tunnel upgrade)', async () => {
    const w = wire({ method: 'get', path: '/api/v1/brokers/connect', brokerId: BROKER_ID, secret: SECRET.toString('base64url'), nowSecs: NOW });
    expect(w.headers['content-type']).toBeUndefined();
    expect(await verify({ ...w, method: 'GET' })).toMatchObject({ ok: true });
  });

  it('refuses every single-field tamper with bad_signature', async () => {
    const tampers: Array<[string, (w: Wire) => Wire]> = [
      ['method', (w) => ({ ...w, method: 'PUT' })],
      ['path', (w) => ({ ...w, path: '/api/v1/brokers/statu%73' })],
      ['query', (w) => ({ ...w, rawQuery: 'verbose=1&tag=a+b' })],
      ['query dropped', (w) => ({ ...w, rawQuery: '' })],
      ['body', (w) => ({ ...w, body: '{"agentId":"a2","phase":"running"}' })],
      ['body dropped', (w) => ({ ...w, body: undefined })],
      ['timestamp', (w) => ({ ...w, headers: { ...w.headers, 'x-graft-timestamp': String(NOW + 1) } })],
      ['nonce', (w) => ({ ...w, headers: { ...w.headers, 'x-graft-nonce': `${NONCE}x` } })],
      ['broker id', (w) => ({ ...w, headers: { ...w.headers, 'x-graft-broker-id': '0b6f4c3e-2a1d-4e5f-9a8b-7c6d5e4f3a2c' } })],
      ['content-type', (w) => ({ ...w, headers: { ...w.headers, 'content-type': 'text/plain' } })],
      ['content-type dropped', (w) => ({ ...w, headers: { ...w.headers, 'content-type': undefined } })],
    ];
    const w = wire({ ...base, nonce: NONCE });
    for (const [field, tamper] of tampers) {
      expect(await verify(tamper(w)), field).toEqual({ ok: false, reason: 'bad_signature' });
    }
    expect(await verify(w)).toMatchObject({ ok: true });
  });

  it('signs an empty body differently from "{}" and treats absent, null and zero-length bodies alike', async () => {
    const empty = signRequest({ ...base, body: undefined, nonce: NONCE });
    expect(signRequest({ ...base, body: '{}', nonce: NONCE })['X-Graft-Signature']).not.toBe(empty['X-Graft-Signature']);
    expect(signRequest({ ...base, body: '', nonce: NONCE })['X-Graft-Signature']).toBe(empty['X-Graft-Signature']);
    expect(signRequest({ ...base, body: new Uint8Array(), nonce: NONCE })['X-Graft-Signature']).toBe(empty['X-Graft-Signature']);
    expect(await verify({ ...wire({ ...base, body: '{}' }), body: Buffer.from('{}') })).toMatchObject({ ok: true });
  });

  it('tolerates up to 300 s of clock skew either way and refuses 301 s', async () => {
    const w = wire();
    expect(await verify(w, { nowSecs: NOW + 299 })).toMatchObject({ ok: true });
    expect(await verify(w, { nowSecs: NOW - 299 })).toMatchObject({ ok: true });
    expect(await verify(w, { nowSecs: NOW + 300 })).toMatchObject({ ok: true });
    expect(await verify(w, { nowSecs: NOW + 301 })).toEqual({ ok: false, reason: 'clock_skew' });
    expect(await verify(w, { nowSecs: NOW - 301 })).toEqual({ ok: false, reason: 'clock_skew' });
  });

  it('refuses missing headers, then malformed ones', async () => {
    const w = wire();
    for (const name of ['x-graft-broker-id', 'x-graft-timestamp', 'x-graft-nonce', 'x-graft-signature']) {
      expect(await verify({ ...w, headers: { ...w.headers, [name]: undefined } }), name).toEqual({ ok: false, reason: 'missing_headers' });
      expect(await verify({ ...w, headers: { ...w.headers, [name]: '  ' } }), name).toEqual({ ok: false, reason: 'missing_headers' });
    }
    const malformed: Record<string, string | string[]> = {
      'x-graft-broker-id': 'broker-1',
      'x-graft-timestamp': '1700000000.5',
      'x-graft-nonce': 'short',
      'x-graft-signature': 'not/base64url+',
      'content-type': ['application/json', 'text/plain'],
    };
    for (const [name, value] of Object.entries(malformed)) {
      expect(await verify({ ...w, headers: { ...w.headers, [name]: value } }), name).toEqual({ ok: false, reason: 'malformed_headers' });
    }
    expect(await verify({ ...w, headers: { ...w.headers, 'x-graft-timestamp': '-1700000000' } })).toEqual({ ok: false, reason: 'malformed_headers' });
    expect(await verify({ ...w, headers: { ...w.headers, 'x-graft-nonce': 'A'.repeat(65) } })).toEqual({ ok: false, reason: 'malformed_headers' });
    expect(readBrokerId({ 'x-graft-broker-id': 'broker-1' })).toBeNull();
    expect(readBrokerId({})).toBeNull();
  });

  it('refuses a replay of an identical valid request, but only once the first was accepted', async () => {
    const cache = new MemoryNonceCache({ nowSecs: () => NOW });
    const w = wire();
    const forged = { ...w, headers: { ...w.headers, 'x-graft-signature': 'A'.repeat(43) } };
    expect(await verify(forged, { cache })).toEqual({ ok: false, reason: 'bad_signature' });
    expect(await verify(w, { cache })).toMatchObject({ ok: true });
    expect(await verify(w, { cache })).toEqual({ ok: false, reason: 'replayed_nonce' });
    expect(await verify(wire(), { cache })).toMatchObject({ ok: true });
  });

  it('accepts the previous secret during rotation and reports which secret matched', async () => {
    const w = wire({ ...base, secret: PREVIOUS_SECRET });
    expect(await verify(w, { secrets: [SECRET, PREVIOUS_SECRET] })).toEqual({ ok: true, brokerId: BROKER_ID, secretIndex: 1 });
    expect(await verify(w, { secrets: [SECRET] })).toEqual({ ok: false, reason: 'bad_signature' });
    expect(await verify(w, { secrets: [] })).toEqual({ ok: false, reason: 'bad_signature' });
  });

  it('compares signatures of any length without throwing', async () => {
    const w = wire();
    const sig = w.headers['x-graft-signature'] as string;
    for (const s of [sig.slice(0, 42), `${sig}A`, 'A', 'A'.repeat(128)]) {
      expect(await verify({ ...w, headers: { ...w.headers, 'x-graft-signature': s } })).toEqual({ ok: false, reason: 'bad_signature' });
    }
  });

  it('rejects secrets that are not 32 bytes and paths that are not bare paths', () => {
    expect(() => signRequest({ ...base, secret: Buffer.alloc(16) })).toThrow(/32 bytes/);
    expect(() => signRequest({ ...base, secret: 'c2VjcmV0' })).toThrow(/32 bytes/);
    expect(() => signRequest({ ...base, path: '/a?b=1' })).toThrow(/bare request path/);
    expect(() => signRequest({ ...base, path: 'https://hub/a' })).toThrow(/bare request path/);
  });

  it('splits a raw request target at the first "?" without decoding', () => {
    expect(splitRequestTarget('/a%2Fb?x=%20&y=?z')).toEqual({ path: '/a%2Fb', rawQuery: 'x=%20&y=?z' });
    expect(splitRequestTarget('/a')).toEqual({ path: '/a', rawQuery: '' });
    expect(splitRequestTarget('/a?')).toEqual({ path: '/a', rawQuery: '' });
  });
});

// Computed once with an independent implementation (Python hmac/hashlib, and openssl for the GET);
// a change to the canonical form must fail here, and then needs a protocol version bump.
describe('fixed test vectors', () => {
  it('POST with query and JSON body', () => {
    const parts = { ...base, timestamp: String(NOW), nonce: NONCE, rawQuery: base.rawQuery ?? '' };
    expect(canonicalRequest(parts)).toBe(
      'POST\n/api/v1/brokers/status\nverbose=1&tag=a%20b\n1700000000\nAAECAwQFBgcICQoLDA0ODw\n' +
        'x-graft-broker-id:0b6f4c3e-2a1d-4e5f-9a8b-7c6d5e4f3a2b\ncontent-type:application/json\n' +
        'o1E69gyHlmqvWv/XRMzF0EXEaReO540piLo5hhw8c8M=',
    );
    expect(signRequest({ ...base, nonce: NONCE })).toEqual({
      'X-Graft-Broker-Id': BROKER_ID,
      'X-Graft-Timestamp': '1700000000',
      'X-Graft-Nonce': NONCE,
      'X-Graft-Signature': 'qh5AIe1siLO4eXlJu3rFPpBXkE7SWfd2mS8_bHOZcwY',
    });
  });

  it('GET without query, body or content-type, secret as base64url', () => {
    const headers = signRequest({
      method: 'GET',
      path: '/api/v1/brokers/connect',
      brokerId: BROKER_ID,
      secret: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8',
      nowSecs: NOW,
      nonce: NONCE,
    });
    expect(headers['X-Graft-Signature']).toBe('Tgat_e6g8apBQclTLNOsj976tXaEZSqbnKGrhe9oDmo');
  });
});
