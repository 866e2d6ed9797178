import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { GraftClient } from '@graft/client';
import type { ApiKey, CreatedApiKey, ErrorBody, Me, Page, RotatedSigningKey, User } from '@graft/protocol';
import { apiRequest, devLogin, expectApiError, type HubFixture, startHubFixture } from '@graft/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

let fx: HubFixture;
let base: string;
let admin: GraftClient;
let db: pg.Client;

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  base = fx.hub.url;
  admin = new GraftClient({ baseUrl: base, token: fx.hub.adminToken });
  db = new pg.Client({ connectionString: fx.database.url });
  await db.connect();
});
afterAll(async () => {
  await db?.end();
  await fx?.stop();
});

/** Raw request against this file's hub; `token: null` sends no Authorization header. */
const api = <T = unknown>(token: string | null, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => apiRequest<T>(base, token, method, path, body, headers);
const expectError = expectApiError;
const login = (email: string) => devLogin(base, email);

const jwtHeader = (token: string): { kid?: string; alg?: string } => JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8'));
const b64url = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');

describe('dev login', () => {
  it('creates the user on first login (email lower-cased), returns the same user later, and the JWT works', async () => {
    const first = await login('Dev.User@Example.com');
    expect(first.user).toMatchObject({ email: 'dev.user@example.com', isAdmin: false });
    expect(first.token.split('.')).toHaveLength(3);
    expect(Date.parse(first.expiresAt)).toBeGreaterThan(Date.now());
    const again = await login('dev.user@example.com');
    expect(again.user.id).toBe(first.user.id);
    const me = await first.client.me();
    expect(me).toEqual({ kind: 'user', user: first.user, via: 'jwt', scopes: ['read', 'write'] });
  });

  it('rejects a malformed email with validation_error', async () => {
    expectError(await api(null, 'POST', '/api/v1/auth/dev-login', { email: 'not-an-email' }), 400, 'validation_error');
    expectError(await api(null, 'POST', '/api/v1/auth/dev-login', { email: 'a@b.co', extra: 1 }), 400, 'validation_error');
  });

  it('answers 404 not_found when GRAFT_DEV_AUTH is off, while API keys keep working', async () => {
    const off = await startHubFixture(inject('pgAdminUrl'), { env: { GRAFT_DEV_AUTH: '0' } });
    try {
      const res = await fetch(`${off.hub.url}/api/v1/auth/dev-login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'someone@example.com' }),
      });
      expect(res.status).toBe(404);
      expect(((await res.json()) as ErrorBody).error.code).toBe('not_found');
      const me = await new GraftClient({ baseUrl: off.hub.url, token: off.hub.adminToken }).me();
      expect(me.kind).toBe('user');
      // The refused login must not have created the user either.
      const users = await new GraftClient({ baseUrl: off.hub.url, token: off.hub.adminToken }).listUsers();
      expect(users.items.map((u) => u.email)).toEqual(['admin@graft.local']);
    } finally {
      await off.stop();
    }
  });
});

describe('GET /auth/me', () => {
  it('describes an API key principal with its scopes', async () => {
    const me = await admin.me();
    expect(me).toMatchObject({ kind: 'user', via: 'api_key', scopes: ['read', 'write'], user: { email: 'admin@graft.local', isAdmin: true } });
  });

  it('describes an agent JWT as the agent and its project', async () => {
    const owner = await login('agent-owner@example.com');
    const { project } = await owner.client.registerProject({ name: 'me-agents' });
    await owner.client.createTemplate({ name: 'echo', harness: 'command', command: ['echo', 'hi'], projectId: project.id });
    const agent = await owner.client.createAgent({ projectId: project.id, name: 'a1', template: 'echo' });
    const minted = await owner.client.mintAgentToken(agent.id);
    const me = await owner.client.withToken(minted.token).me();
    expect(me).toEqual({ kind: 'agent', agentId: agent.id, projectId: project.id });
  });

  it('answers 401 unauthorized without a token', async () => {
    expectError(await api(null, 'GET', '/api/v1/auth/me'), 401, 'unauthorized');
  });
});

describe('API keys', () => {
  it('shows a new 64-hex token once; listings never carry the token or its hash', async () => {
    const u = await login('keys-once@example.com');
    const created = await api<CreatedApiKey>(u.token, 'POST', '/api/v1/api-keys', { name: 'ci' });
    expect(created.status).toBe(201);
    expect(created.body.token).toMatch(/^[0-9a-f]{64}$/);
    expect(created.body).toMatchObject({ name: 'ci', scopes: ['read', 'write'], expiresAt: null });
    const token = created.body.token;

    const me = (await u.client.withToken(token).me()) as Extract<Me, { kind: 'user' }>;
    expect(me).toMatchObject({ kind: 'user', via: 'api_key', user: { id: u.user.id } });

    const list = await api<Page<ApiKey>>(u.token, 'GET', '/api/v1/api-keys');
    expect(list.status).toBe(200);
    expect(list.text).not.toContain(token);
    expect(list.text).not.toContain(createHash('sha256').update(token).digest('hex'));
    expect(list.body.items).toHaveLength(1);
    const item = list.body.items[0];
    expect(Object.keys(item ?? {}).sort()).toEqual(['createdAt', 'expiresAt', 'id', 'lastUsedAt', 'name', 'prefix', 'revokedAt', 'scopes']);
    expect(item).toMatchObject({ id: created.body.id, name: 'ci', prefix: token.slice(0, 8), revokedAt: null });
  });

  it('stores only the SHA-256 of the token in the database', async () => {
    const u = await login('keys-hash@example.com');
    const { id, token } = await u.client.createApiKey({ name: 'hashed' });
    const row = await db.query<{ token_hash: Buffer }>('SELECT token_hash FROM api_keys WHERE id = $1', [id]);
    expect(row.rows[0]?.token_hash.equals(createHash('sha256').update(token, 'utf8').digest())).toBe(true);
    // Every row of every table, as text: the plaintext token must appear nowhere.
    const tables = await db.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'");
    expect(tables.rows.map((t) => t.table_name)).toContain('api_keys');
    for (const { table_name } of tables.rows) {
      const rows = await db.query<{ r: string }>(`SELECT t::text AS r FROM "${table_name}" t`);
      for (const { r } of rows.rows) expect(r, `table ${table_name}`).not.toContain(token);
    }
  });

  it('pages through keys with limit and cursor without gaps or duplicates', async () => {
    const u = await login('keys-paging@example.com');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await u.client.createApiKey({ name: `k${i}` })).id);
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | undefined;
    for (let guard = 0; guard < 10; guard++) {
      const page = await u.client.listApiKeys({ limit: 2, ...(cursor ? { cursor } : {}) });
      sizes.push(page.items.length);
      seen.push(...page.items.map((k) => k.id));
      if (page.nextCursor === null) break;
      cursor = page.nextCursor;
    }
    expect(sizes).toEqual([2, 2, 1]);
    expect(new Set(seen).size).toBe(seen.length);
    expect([...seen].sort()).toEqual([...ids].sort());
    expectError(await api(u.token, 'GET', '/api/v1/api-keys?cursor=bm90LWEtdXVpZA'), 400, 'validation_error');
    expectError(await api(u.token, 'GET', '/api/v1/api-keys?limit=0'), 400, 'validation_error');
  });

  it('rejects a revoked key at once; other users cannot revoke it', async () => {
    const u = await login('keys-revoke@example.com');
    const other = await login('keys-revoke-other@example.com');
    const key = await u.client.createApiKey({ name: 'soon-revoked' });
    expect((await api(key.token, 'GET', '/api/v1/auth/me')).status).toBe(200);
    expectError(await api(other.token, 'DELETE', `/api/v1/api-keys/${key.id}`), 404, 'not_found');
    expect((await api(key.token, 'GET', '/api/v1/auth/me')).status).toBe(200);
    const del = await api(u.token, 'DELETE', `/api/v1/api-keys/${key.id}`);
    expect(del.status).toBe(204);
    expectError(await api(key.token, 'GET', '/api/v1/auth/me'), 401, 'unauthorized');
    expectError(await api(key.token, 'GET', '/api/v1/api-keys'), 401, 'unauthorized');
    const listed = (await u.client.listApiKeys()).items.find((k) => k.id === key.id);
    expect(listed?.revokedAt).toEqual(expect.any(String));
    expectError(await api(u.token, 'DELETE', '/api/v1/api-keys/00000000-0000-4000-8000-000000000000'), 404, 'not_found');
  });

  it('refuses expiresAt in the past with validation_error', async () => {
    const u = await login('keys-past@example.com');
    const r = await api(u.token, 'POST', '/api/v1/api-keys', { name: 'old', expiresAt: new Date(Date.now() - 60_000).toISOString() });
    expectError(r, 400, 'validation_error');
    expectError(await api(u.token, 'POST', '/api/v1/api-keys', { name: 'bad', expiresAt: 'tomorrow' }), 400, 'validation_error');
    expect((await u.client.listApiKeys()).items).toEqual([]);
  });

  it('rejects a key with 401 once it has expired', async () => {
    const u = await login('keys-expiry@example.com');
    const expiresAt = new Date(Date.now() + 2000);
    const key = await u.client.createApiKey({ name: 'short', expiresAt: expiresAt.toISOString() });
    expect(key.expiresAt).toBe(expiresAt.toISOString());
    expect((await api(key.token, 'GET', '/api/v1/auth/me')).status).toBe(200);
    await sleep(expiresAt.getTime() - Date.now() + 250);
    expectError(await api(key.token, 'GET', '/api/v1/auth/me'), 401, 'unauthorized');
  });

  it('lets a read-only key GET but answers 403 forbidden to any write', async () => {
    const u = await login('keys-readonly@example.com');
    const key = await u.client.createApiKey({ name: 'ro', scopes: ['read'] });
    expect(key.scopes).toEqual(['read']);
    const me = await api<Me>(key.token, 'GET', '/api/v1/auth/me');
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ kind: 'user', via: 'api_key', scopes: ['read'] });
    expect((await api(key.token, 'GET', '/api/v1/api-keys')).status).toBe(200);
    expect((await api(key.token, 'GET', '/api/v1/projects')).status).toBe(200);
    expectError(await api(key.token, 'POST', '/api/v1/api-keys', { name: 'escalate', scopes: ['read'] }), 403, 'forbidden');
    expectError(await api(key.token, 'POST', '/api/v1/projects/register', { name: 'nope' }), 403, 'forbidden');
    expectError(await api(key.token, 'DELETE', `/api/v1/api-keys/${key.id}`), 403, 'forbidden');
    // The refused self-revocation must not have happened.
    expect((await api(key.token, 'GET', '/api/v1/auth/me')).status).toBe(200);
  });

  it('never creates a key with scopes the calling key lacks', async () => {
    const u = await login('keys-scopes@example.com');
    const writeOnly = await u.client.createApiKey({ name: 'w', scopes: ['write'] });
    expectError(await api(writeOnly.token, 'POST', '/api/v1/api-keys', { name: 'more', scopes: ['read', 'write'] }), 403, 'forbidden');
    expectError(await api(writeOnly.token, 'POST', '/api/v1/api-keys', { name: 'other', scopes: ['read'] }), 403, 'forbidden');
    const same = await api<CreatedApiKey>(writeOnly.token, 'POST', '/api/v1/api-keys', { name: 'same', scopes: ['write'] });
    expect(same.status).toBe(201);
    expect(same.body.scopes).toEqual(['write']);
    // Without explicit scopes a new key inherits the caller's, never more.
    const inherited = await api<CreatedApiKey>(writeOnly.token, 'POST', '/api/v1/api-keys', { name: 'inherit' });
    expect(inherited.status).toBe(201);
    expect(inherited.body.scopes).toEqual(['write']);
    expect((await u.client.listApiKeys()).items.map((k) => k.name).sort()).toEqual(['inherit', 'same', 'w']);
    // Scopes are symmetric: without "read" a key cannot GET either.
    expectError(await api(writeOnly.token, 'GET', '/api/v1/projects'), 403, 'forbidden');
    expectError(await api(writeOnly.token, 'GET', '/api/v1/auth/me'), 403, 'forbidden');
  });

  it('answers 401 for a well-formed key that does not exist', async () => {
    expectError(await api(randomBytes(32).toString('hex'), 'GET', '/api/v1/auth/me'), 401, 'unauthorized');
  });
});

describe('users', () => {
  it('lets only platform admins create users; duplicate emails are a conflict', async () => {
    const u = await login('users-plain@example.com');
    expectError(await api(u.token, 'POST', '/api/v1/users', { email: 'made-by-plain@example.com' }), 403, 'forbidden');
    const created = await api<User>(fx.hub.adminToken, 'POST', '/api/v1/users', { email: 'New.Person@Example.com', name: 'New Person' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ email: 'new.person@example.com', name: 'New Person', isAdmin: false });
    expectError(await api(fx.hub.adminToken, 'POST', '/api/v1/users', { email: 'new.person@example.com' }), 409, 'conflict');
    expectError(await api(fx.hub.adminToken, 'POST', '/api/v1/users', { email: 'NEW.PERSON@example.com' }), 409, 'conflict');
    expectError(await api(fx.hub.adminToken, 'POST', '/api/v1/users', { email: 'nope' }), 400, 'validation_error');
    // The forbidden attempt created nothing.
    expect((await admin.listUsers({ email: 'made-by-plain@example.com' })).items).toEqual([]);
  });

  it('makes a user created with isAdmin a platform admin when they log in', async () => {
    await admin.createUser({ email: 'second-admin@example.com', isAdmin: true });
    const second = await login('second-admin@example.com');
    expect(second.user.isAdmin).toBe(true);
    expect((await api(second.token, 'GET', '/api/v1/users')).status).toBe(200);
  });

  it('lists all users to admins (paged) but only exact email look-ups to others', async () => {
    const u = await login('users-lookup@example.com');
    const all: User[] = [];
    let cursor: string | undefined;
    for (let guard = 0; guard < 50; guard++) {
      const page = await admin.listUsers({ limit: 2, ...(cursor ? { cursor } : {}) });
      all.push(...page.items);
      if (page.nextCursor === null) break;
      cursor = page.nextCursor;
    }
    const emails = all.map((x) => x.email);
    expect(new Set(emails).size).toBe(emails.length);
    expect(emails).toEqual(expect.arrayContaining(['admin@graft.local', 'users-lookup@example.com', 'new.person@example.com']));
    const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM users');
    expect(all).toHaveLength(Number(rows[0]?.n));

    expectError(await api(u.token, 'GET', '/api/v1/users'), 403, 'forbidden');
    const one = await api<Page<User>>(u.token, 'GET', `/api/v1/users?email=${encodeURIComponent('NEW.Person@example.com')}`);
    expect(one.status).toBe(200);
    expect(one.body.items.map((x) => x.email)).toEqual(['new.person@example.com']);
    const none = await api<Page<User>>(u.token, 'GET', '/api/v1/users?email=nobody%40example.com');
    expect(none.body).toEqual({ items: [], nextCursor: null });
    expectError(await api(u.token, 'GET', '/api/v1/users?email=not-an-email'), 400, 'validation_error');
  });
});

describe('signing-key rotation', () => {
  it('is admin-only; tokens from before a rotation keep working and new ones use the new key', async () => {
    const u = await login('rotation@example.com');
    const oldKid = jwtHeader(u.token).kid;
    expect(oldKid).toEqual(expect.any(String));
    expectError(await api(u.token, 'POST', '/api/v1/admin/signing-keys/rotate'), 403, 'forbidden');

    const rotated = await api<RotatedSigningKey>(fx.hub.adminToken, 'POST', '/api/v1/admin/signing-keys/rotate');
    expect(rotated.status).toBe(201);
    expect(rotated.body.kid).not.toBe(oldKid);

    expect((await api(u.token, 'GET', '/api/v1/auth/me')).status).toBe(200);
    const fresh = await login('rotation@example.com');
    expect(jwtHeader(fresh.token).kid).toBe(rotated.body.kid);
    const me = await api<Me>(fresh.token, 'GET', '/api/v1/auth/me');
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ kind: 'user', user: { id: u.user.id } });
  });
});

describe('bad credentials', () => {
  it('answers 401 to a JWT whose signature was tampered with', async () => {
    const u = await login('tamper@example.com');
    const [h = '', p = '', s = ''] = u.token.split('.');
    const i = Math.floor(s.length / 2);
    const flipped = `${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;
    expectError(await api(`${h}.${p}.${flipped}`, 'GET', '/api/v1/auth/me'), 401, 'unauthorized');
    expect((await api(u.token, 'GET', '/api/v1/auth/me')).status).toBe(200);
  });

  it('answers 401 to a JWT whose claims were changed (claiming to be the admin)', async () => {
    const u = await login('forger@example.com');
    const adminMe = (await admin.me()) as Extract<Me, { kind: 'user' }>;
    const [h = '', p = '', s = ''] = u.token.split('.');
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
    const forged = `${h}.${b64url({ ...claims, sub: adminMe.user.id })}.${s}`;
    expectError(await api(forged, 'GET', '/api/v1/auth/me'), 401, 'unauthorized');
    const unsigned = `${b64url({ alg: 'none', typ: 'JWT', kid: jwtHeader(u.token).kid })}.${b64url({ ...claims, sub: adminMe.user.id })}.`;
    expectError(await api(unsigned, 'GET', '/api/v1/auth/me'), 401, 'unauthorized');
    const unknownKid = `${b64url({ ...jwtHeader(u.token), kid: 'k-not-a-key' })}.${p}.${s}`;
    expectError(await api(unknownKid, 'GET', '/api/v1/auth/me'), 401, 'unauthorized');
  });

  it.each([['garbage'], ['a.b.c'], ['eyJhbGciOiJIUzI1NiJ9.e30.x'], ['Zm9v']])('answers 401 to the garbage bearer token %s', async (token) => {
    expectError(await api(token, 'GET', '/api/v1/auth/me'), 401, 'unauthorized');
  });

  it.each([['Basic dXNlcjpwYXNz'], ['Bearer'], ['Bearer '], ['Bearer a b'], ['Token abc']])('answers 401 to the malformed Authorization header "%s"', async (header) => {
    expectError(await api(null, 'GET', '/api/v1/auth/me', undefined, { authorization: header }), 401, 'unauthorized');
  });

  it('accepts the Bearer scheme in any case (RFC 7235)', async () => {
    const r = await api<Me>(null, 'GET', '/api/v1/auth/me', undefined, { authorization: `bearer ${fx.hub.adminToken}` });
    expect(r.status).toBe(200);
    expect(r.body.kind).toBe('user');
  });
});
