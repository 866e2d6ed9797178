import { randomBytes } from 'node:crypto';
import { GraftClient } from '@graft/client';
import { migrations } from '@graft/db';
import { createFreshDatabase, type FreshDatabase, type HubProcess, registerAndJoinBroker, SimBroker, startHubProcess, waitUntil } from '@graft/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

// Three replicas boot at the same moment on one empty database, as a rollout would.
let database: FreshDatabase;
let hubs: HubProcess[] = [];
const adminToken = randomBytes(32).toString('hex');
const masterKey = randomBytes(32).toString('hex');

beforeAll(async () => {
  database = await createFreshDatabase(inject('pgAdminUrl'));
  hubs = await Promise.all(
    [0, 1, 2].map(() => startHubProcess({ databaseUrl: database.url, env: { GRAFT_ADMIN_TOKEN: adminToken, GRAFT_MASTER_KEY: masterKey } })),
  );
});

afterAll(async () => {
  await Promise.all(hubs.map((h) => h.stop()));
  await database?.drop();
});

async function count(sql: string): Promise<number> {
  const c = new pg.Client({ connectionString: database.url });
  await c.connect();
  try {
    const r = await c.query<{ n: string }>(sql);
    return Number(r.rows[0]?.n);
  } finally {
    await c.end();
  }
}

describe('hub replicas on one database', () => {
  it('migrate once, bootstrap one admin and one signing key', async () => {
    expect(await count('SELECT count(*) AS n FROM graft_migrations')).toBe(migrations.length);
    expect(await count('SELECT count(*) AS n FROM users')).toBe(1);
    expect(await count('SELECT count(*) AS n FROM api_keys')).toBe(1);
    expect(await count('SELECT count(*) AS n FROM signing_keys')).toBe(1);
    const migratedBy = hubs.filter((h) => h.logs.some((l) => l.event === 'migration.applied'));
    expect(migratedBy).toHaveLength(1);
  });

  it('accept a JWT minted by any replica on every replica, also after a key rotation', async () => {
    const [a, b, c] = hubs.map((h) => new GraftClient({ baseUrl: h.url, token: adminToken }));
    if (!a || !b || !c) throw new Error('three hubs expected');
    const login = await a.devLogin('replica-user@example.com');
    for (const client of [a, b, c]) {
      const me = await client.withToken(login.token).me();
      expect(me.kind === 'user' && me.user.email).toBe('replica-user@example.com');
    }
    const rotated = (await (await fetch(`${hubs[1]?.url}/api/v1/admin/signing-keys/rotate`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } })).json()) as { kid: string };
    expect(rotated.kid).toMatch(/^k/);
    // Replicas that have not seen the new kid load it from Postgres on first sight; old tokens stay valid.
    const fresh = await b.devLogin('replica-user@example.com');
    const header = JSON.parse(Buffer.from(fresh.token.split('.')[0] ?? '', 'base64url').toString('utf8'));
    expect(header.kid).toBe(rotated.kid);
    for (const client of [a, b, c]) {
      await expect(client.withToken(fresh.token).me()).resolves.toMatchObject({ kind: 'user' });
      await expect(client.withToken(login.token).me()).resolves.toMatchObject({ kind: 'user' });
    }
  });

  it('keep serving on the others when one replica is killed', async () => {
    const victim = hubs[0];
    if (!victim) throw new Error('no hub');
    await victim.stop('SIGKILL');
    const survivor = new GraftClient({ baseUrl: hubs[2]?.url ?? '', token: adminToken });
    const p = await survivor.registerProject({ name: 'after-kill' });
    expect(p.created).toBe(true);
  });

  it("deliver a command created on a replica that does not hold the broker's tunnel, through the one that does", async () => {
    // hubs[0] was killed above.
    const [, a, b] = hubs;
    if (!a || !b) throw new Error('two live hubs expected');
    const joined = await registerAndJoinBroker(a.url, adminToken, { name: 'replicated', autoProvide: true });
    const sim = new SimBroker({ hubUrl: a.url, brokerId: joined.brokerId, secretKey: joined.secretKey });
    try {
      expect((await sim.connect()).ok).toBe(true);
      const onB = new GraftClient({ baseUrl: b.url, token: adminToken });
      const project = (await onB.registerProject({ name: 'replicated' })).project;
      await onB.createTemplate({ name: 't', projectId: project.id, harness: 'command', command: ['true'] });
      // Replica b places the agent on the broker (the database says it is connected) but cannot reach its tunnel.
      const agent = await onB.createAgent({ projectId: project.id, name: 'a', template: 't' });
      expect(agent.brokerId).toBe(joined.brokerId);
      // The create goes out after the 201, so its outcome is logged a moment later.
      await waitUntil(async () => b.logs.some((l) => l.event === 'dispatch.deferred' && l.agentId === agent.id), 5_000);
      // Replica a, which holds the tunnel, sends the unconfirmed generation (after 5 s, on its 10 s sweep).
      await sim.waitFor(() => sim.commands.some((c) => c.agent.agentId === agent.id && c.command === 'create'), 20_000);
      await waitUntil(async () => (await onB.getAgent(agent.id)).phase === 'running', 5_000);
    } finally {
      await sim.close();
    }
  }, 30_000);
});
