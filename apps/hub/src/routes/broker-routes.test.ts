import { createHash, randomUUID } from 'node:crypto';
import { GraftClient } from '@graft/client';
import { Broker, signRequest } from '@graft/protocol';
import { apiRequest, devLogin, expectApiError, type HubFixture, startHubFixture } from '@graft/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

let fx: HubFixture;
let admin: GraftClient;
let db: pg.Client;
const neverPrinted: string[] = [];

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  admin = new GraftClient({ baseUrl: fx.hub.url, token: fx.hub.adminToken });
  db = new pg.Client({ connectionString: fx.database.url });
  await db.connect();
});
afterAll(async () => {
  await db?.end();
  await fx?.stop();
});

const joinBody = (brokerId: string, joinToken: string) => ({ brokerId, joinToken, hostname: 'node-1', version: '0.1.0', runtimes: ['process'], capacity: { maxAgents: 8 } });
const join = (brokerId: string, joinToken: string) => apiRequest(fx.hub.url, null, 'POST', '/api/v1/brokers/join', joinBody(brokerId, joinToken));

describe('broker registration, phase 1', () => {
  it('lets a platform admin register a broker; only the hash of the single-use token is stored', async () => {
    const { project } = await admin.registerProject({ name: 'linked' });
    const r = await admin.registerBroker({ name: 'node-a', labels: { zone: 'eu' }, projectIds: [project.id] });
    neverPrinted.push(r.joinToken);
    expect(r.brokerId).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.joinToken).toMatch(/^gjt_[A-Za-z0-9_-]{43}$/);
    const ttl = (Date.parse(r.expiresAt) - Date.now()) / 1000;
    expect(ttl).toBeGreaterThan(3500);
    expect(ttl).toBeLessThanOrEqual(3600);
    const row = await db.query('SELECT join_token_hash, to_jsonb(b)::text AS all_columns FROM brokers b WHERE id = $1', [r.brokerId]);
    expect(row.rows[0].join_token_hash.equals(createHash('sha256').update(r.joinToken).digest())).toBe(true);
    expect(row.rows[0].all_columns).not.toContain(r.joinToken);
    const shown = Broker.strict().parse(await admin.getBroker(r.brokerId));
    expect(shown).toMatchObject({ name: 'node-a', labels: { zone: 'eu' }, projectIds: [project.id], joined: false, status: 'offline', runtimes: [] });
    expect(JSON.stringify(shown)).not.toContain(r.joinToken);
  });

  it('refuses non-admins (403), duplicate names (409) and unknown projects (404)', async () => {
    const user = await devLogin(fx.hub.url, 'broker-user@example.com');
    expectApiError(await apiRequest(fx.hub.url, user.token, 'POST', '/api/v1/brokers/register', { name: 'nope' }), 403, 'forbidden');
    expectApiError(await apiRequest(fx.hub.url, user.token, 'GET', '/api/v1/brokers'), 403, 'forbidden');
    await admin.registerBroker({ name: 'twice' });
    expectApiError(await apiRequest(fx.hub.url, fx.hub.adminToken, 'POST', '/api/v1/brokers/register', { name: 'twice' }), 409, 'conflict');
    expectApiError(await apiRequest(fx.hub.url, fx.hub.adminToken, 'POST', '/api/v1/brokers/register', { name: 'orphan', projectIds: [randomUUID()] }), 404, 'not_found');
    expect((await admin.listBrokers()).items.map((b) => b.name)).not.toContain('orphan');
  });
});

describe('broker join, phase 2', () => {
  it('exchanges the token once for a secret, and records the node', async () => {
    const r = await admin.registerBroker({ name: 'node-join' });
    const res = await join(r.brokerId, r.joinToken);
    expect(res.status).toBe(200);
    const body = res.body as { brokerId: string; secretKey: string; hubUrl: string };
    neverPrinted.push(body.secretKey);
    expect(body).toEqual({ brokerId: r.brokerId, secretKey: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), hubUrl: fx.hub.url });
    const row = await db.query('SELECT joined_at, secret_enc FROM brokers WHERE id = $1', [r.brokerId]);
    expect(row.rows[0].joined_at).not.toBeNull();
    expect(row.rows[0].secret_enc).not.toContain(body.secretKey);
    const shown = await admin.getBroker(r.brokerId);
    expect(shown).toMatchObject({ joined: true, joinExpiresAt: null, hostname: 'node-1', version: '0.1.0', runtimes: ['process'], capacity: { maxAgents: 8 }, load: { runningAgents: 0 } });
    expectApiError(await join(r.brokerId, r.joinToken), 409, 'join_token_consumed');
    // A wrong token learns nothing about whether the broker joined.
    expectApiError(await join(r.brokerId, `gjt_${'x'.repeat(43)}`), 401, 'join_token_invalid');
  });

  it('gives a wrong token, an unknown broker and an expired token each their own error', async () => {
    const r = await admin.registerBroker({ name: 'node-errors' });
    const other = await admin.registerBroker({ name: 'node-other' });
    expectApiError(await join(r.brokerId, other.joinToken), 401, 'join_token_invalid');
    expectApiError(await join(randomUUID(), r.joinToken), 404, 'not_found');
    await db.query("UPDATE brokers SET join_expires_at = now() - interval '1 second' WHERE id = $1", [r.brokerId]);
    expectApiError(await join(r.brokerId, r.joinToken), 401, 'join_token_expired');
    // Failed attempts consumed nothing: the other broker can still join.
    expect((await join(other.brokerId, other.joinToken)).status).toBe(200);
  });

  it('lets exactly one of ten concurrent joins with the same token succeed', async () => {
    const r = await admin.registerBroker({ name: 'node-race' });
    const results = await Promise.all(Array.from({ length: 10 }, () => join(r.brokerId, r.joinToken)));
    expect(results.filter((x) => x.status === 200)).toHaveLength(1);
    for (const x of results.filter((y) => y.status !== 200)) expectApiError(x, 409, 'join_token_consumed');
  });

  it('refuses to rotate the secret of a broker that has not joined', async () => {
    const r = await admin.registerBroker({ name: 'node-unjoined' });
    expectApiError(await apiRequest(fx.hub.url, fx.hub.adminToken, 'POST', `/api/v1/brokers/${r.brokerId}/rotate-secret`), 409, 'conflict');
    expectApiError(await apiRequest(fx.hub.url, fx.hub.adminToken, 'POST', `/api/v1/brokers/${randomUUID()}/rotate-secret`), 404, 'not_found');
  });

  it('validates the join body', async () => {
    const r = await admin.registerBroker({ name: 'node-bad-body' });
    const bad = await apiRequest(fx.hub.url, null, 'POST', '/api/v1/brokers/join', { ...joinBody(r.brokerId, r.joinToken), runtimes: ['kubernetes'] });
    expectApiError(bad, 400, 'validation_error');
    expect((await join(r.brokerId, r.joinToken)).status).toBe(200);
  });
});

describe('signed broker requests', () => {
  let brokerId: string;
  let secretKey: string;

  beforeAll(async () => {
    const r = await admin.registerBroker({ name: 'node-signed' });
    const res = await join(r.brokerId, r.joinToken);
    brokerId = r.brokerId;
    secretKey = (res.body as { secretKey: string }).secretKey;
    neverPrinted.push(secretKey);
  });

  const self = (headers: Record<string, string>, path = '/api/v1/brokers/self') => apiRequest(fx.hub.url, null, 'GET', path, undefined, headers);
  const signed = (over: Partial<Parameters<typeof signRequest>[0]> = {}) => signRequest({ method: 'GET', path: '/api/v1/brokers/self', brokerId, secret: secretKey, ...over });
  const rejections = async () => {
    const text = await (await fetch(`${fx.hub.url}/metrics`)).text();
    return Object.fromEntries([...text.matchAll(/^graft_signature_rejections_total\{reason="([a-z_]+)"\} (\d+)/gm)].map((m) => [m[1], Number(m[2])]));
  };

  it('answers a correctly signed request with the broker itself', async () => {
    const r = await self(signed());
    expect(r.status).toBe(200);
    expect(Broker.strict().parse(r.body)).toMatchObject({ id: brokerId, name: 'node-signed', joined: true });
  });

  it('refuses each kind of bad request with its own code and counts it by reason', async () => {
    const before = await rejections();
    expectApiError(await self({}), 401, 'signature_missing');
    expectApiError(await self({ ...signed(), 'X-Graft-Timestamp': 'yesterday' }), 400, 'signature_malformed');
    expectApiError(await self(signed({ nowSecs: Math.floor(Date.now() / 1000) - 301 })), 401, 'clock_skew');
    const tampered = signed();
    expectApiError(await self(tampered, '/api/v1/brokers/self?x=1'), 401, 'signature_invalid');
    expectApiError(await self(signed({ secret: Buffer.alloc(32, 7) })), 401, 'signature_invalid');
    const once = signed();
    expect((await self(once)).status).toBe(200);
    expectApiError(await self(once), 401, 'replayed_request');
    const after = await rejections();
    const delta = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
    expect({ missing: delta('missing_headers'), malformed: delta('malformed_headers'), skew: delta('clock_skew'), bad: delta('bad_signature'), replay: delta('replayed_nonce') }).toEqual({
      missing: 1,
      malformed: 1,
      skew: 1,
      bad: 2,
      replay: 1,
    });
  });

  it('keeps the previous secret working for the grace period after a rotation, then refuses it', async () => {
    const rotated = await apiRequest<{ secretKey: string; previousValidUntil: string }>(fx.hub.url, fx.hub.adminToken, 'POST', `/api/v1/brokers/${brokerId}/rotate-secret`);
    expect(rotated.status).toBe(200);
    neverPrinted.push(rotated.body.secretKey);
    expect(rotated.body.secretKey).not.toBe(secretKey);
    expect(Date.parse(rotated.body.previousValidUntil)).toBeGreaterThan(Date.now() + 3500_000);
    expect((await self(signed())).status).toBe(200);
    expect((await self(signed({ secret: rotated.body.secretKey }))).status).toBe(200);
    await db.query("UPDATE brokers SET previous_secret_expires_at = now() - interval '1 second' WHERE id = $1", [brokerId]);
    expectApiError(await self(signed()), 401, 'signature_invalid');
    expect((await self(signed({ secret: rotated.body.secretKey }))).status).toBe(200);
    secretKey = rotated.body.secretKey;
  });

  it('drains and undrains, links projects, and revokes everything on delete', async () => {
    expect((await apiRequest<{ status: string }>(fx.hub.url, fx.hub.adminToken, 'POST', `/api/v1/brokers/${brokerId}/drain`)).body.status).toBe('draining');
    expect((await apiRequest<{ status: string; draining: boolean }>(fx.hub.url, fx.hub.adminToken, 'POST', `/api/v1/brokers/${brokerId}/undrain`)).body).toMatchObject({ status: 'offline', draining: false });
    const { project } = await admin.registerProject({ name: 'link-me' });
    expect((await apiRequest(fx.hub.url, fx.hub.adminToken, 'PUT', `/api/v1/projects/${project.id}/brokers/${brokerId}`)).status).toBe(204);
    expect((await admin.getBroker(brokerId)).projectIds).toEqual([project.id]);
    expectApiError(await apiRequest(fx.hub.url, fx.hub.adminToken, 'PUT', `/api/v1/projects/${randomUUID()}/brokers/${brokerId}`), 404, 'not_found');
    expect((await apiRequest(fx.hub.url, fx.hub.adminToken, 'DELETE', `/api/v1/projects/${project.id}/brokers/${brokerId}`)).status).toBe(204);
    expectApiError(await apiRequest(fx.hub.url, fx.hub.adminToken, 'DELETE', `/api/v1/projects/${project.id}/brokers/${brokerId}`), 404, 'not_found');
    expect((await apiRequest(fx.hub.url, fx.hub.adminToken, 'DELETE', `/api/v1/brokers/${brokerId}`)).status).toBe(204);
    expectApiError(await self(signed()), 401, 'signature_invalid');
    expectApiError(await apiRequest(fx.hub.url, fx.hub.adminToken, 'GET', `/api/v1/brokers/${brokerId}`), 404, 'not_found');
  });

  it('does not let a signed broker call user endpoints, nor a user token call broker endpoints', async () => {
    expectApiError(await apiRequest(fx.hub.url, fx.hub.adminToken, 'GET', '/api/v1/brokers/self'), 401, 'signature_missing');
    expectApiError(await self(signed({ path: '/api/v1/brokers' }), '/api/v1/brokers'), 401, 'unauthorized');
  });
});

describe('agents naming a broker', () => {
  it('records an existing brokerId for placement and refuses an unknown one', async () => {
    const { project } = await admin.registerProject({ name: 'pinned' });
    await admin.createTemplate({ name: 'w', projectId: project.id, harness: 'command' });
    const b = await admin.registerBroker({ name: 'node-pinned' });
    const agent = await admin.createAgent({ projectId: project.id, name: 'pinned', template: 'w', brokerId: b.brokerId });
    expect(agent.pendingReason).toBe('no_broker');
    const row = await db.query('SELECT requested_broker_id FROM agents WHERE id = $1', [agent.id]);
    expect(row.rows[0].requested_broker_id).toBe(b.brokerId);
    expectApiError(await apiRequest(fx.hub.url, fx.hub.adminToken, 'POST', '/api/v1/agents', { projectId: project.id, name: 'lost', template: 'w', brokerId: randomUUID() }), 404, 'not_found');
  });

  it('never printed a join token or a broker secret', () => {
    expect(neverPrinted.length).toBeGreaterThanOrEqual(2);
    const out = fx.hub.output();
    for (const s of neverPrinted) expect(out).not.toContain(s);
  });
});
