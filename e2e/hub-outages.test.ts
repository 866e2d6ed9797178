import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraftClient } from '@graft/client';
import { type EmbeddedPostgresHandle, startEmbeddedPostgres } from '@graft/db';
import { type HubProcess, registerAndJoinBroker, SimBroker, startHubProcess, startTestRedis, type TestRedis, waitUntil } from '@graft/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A hub on a Postgres and a Redis of its own (never the run's shared ones), which this file stops
// and starts again under it: the hub must ride out both outages without a restart.
const dir = mkdtempSync(join(tmpdir(), 'graft-outage-'));
const adminToken = randomBytes(32).toString('hex');
let postgres: EmbeddedPostgresHandle;
let redis: TestRedis;
let redisPort: number;
let hub: HubProcess;
let admin: GraftClient;
let databaseUrl: string;

async function startPostgres(port?: number): Promise<EmbeddedPostgresHandle> {
  return startEmbeddedPostgres({ dataDir: join(dir, 'pg'), persistent: true, ...(port ? { port } : {}), flags: ['-c', 'fsync=off'] });
}

beforeAll(async () => {
  postgres = await startPostgres();
  const c = new pg.Client({ connectionString: postgres.url });
  await c.connect();
  await c.query('CREATE DATABASE graft');
  await c.end();
  databaseUrl = postgres.url.replace(/\/postgres$/, '/graft');
  redis = await startTestRedis();
  redisPort = Number(new URL(redis.url).port);
  hub = await startHubProcess({ databaseUrl, env: { GRAFT_ADMIN_TOKEN: adminToken, REDIS_URL: redis.url, GRAFT_REDIS_PREFIX: `outage-${randomUUID()}` } });
  admin = new GraftClient({ baseUrl: hub.url, token: adminToken, timeoutMs: 10_000 });
}, 120_000);

afterAll(async () => {
  await hub?.stop();
  await redis?.stop();
  await postgres?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function status(path: string): Promise<{ status: number; body: { error?: { code: string; message: string } } }> {
  const res = await fetch(`${hub.url}${path}`, { headers: { authorization: `Bearer ${adminToken}` } });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } } };
}

describe('outages of the hub’s backing services', () => {
  it('keeps serving reads and writes through a Redis outage, refuses signed requests meanwhile (503), and recovers routing by itself', async () => {
    const project = (await admin.registerProject({ name: 'redis-outage' })).project;
    const joined = await registerAndJoinBroker(hub.url, adminToken, { name: 'outage-node', projectIds: [project.id] });
    await redis.stop();
    // Reads (and Postgres writes) do not need Redis.
    expect((await status('/api/v1/projects')).status).toBe(200);
    expect((await admin.registerProject({ name: 'during-redis-outage' })).created).toBe(true);
    expect((await status('/healthz')).status).toBe(200);
    // A signed request cannot be checked against the shared replay cache: refused, not let through.
    const during = new SimBroker({ hubUrl: hub.url, brokerId: joined.brokerId, secretKey: joined.secretKey });
    const refused = await during.connect();
    expect(refused.ok === false && [refused.status, refused.code]).toEqual([503, 'unavailable']);
    redis = await startTestRedis({ port: redisPort });
    const after = new SimBroker({ hubUrl: hub.url, brokerId: joined.brokerId, secretKey: joined.secretKey });
    try {
      await waitUntil(async () => (await after.connect()).ok, 15_000);
    } finally {
      await after.close();
    }
    expect(hub.logs.some((l) => l.event === 'http.unhandled_error')).toBe(false);
  }, 60_000);

  it('answers 503 unavailable (never 500) while Postgres is down, and serves again without a restart when it is back', async () => {
    expect((await status('/api/v1/projects')).status).toBe(200);
    const port = postgres.port;
    await postgres.stop();
    const list = await status('/api/v1/projects');
    expect(list.status).toBe(503);
    expect(list.body.error?.code).toBe('unavailable');
    const create = await fetch(`${hub.url}/api/v1/projects/register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'during-pg-outage' }),
    });
    expect(create.status).toBe(503);
    expect((await status('/readyz')).status).toBe(503);
    expect((await status('/healthz')).status).toBe(200);
    postgres = await startPostgres(port);
    await waitUntil(async () => (await status('/api/v1/projects')).status === 200, 20_000);
    expect((await status('/readyz')).status).toBe(200);
    expect((await admin.registerProject({ name: 'after-pg-outage' })).created).toBe(true);
    expect(hub.logs.some((l) => l.event === 'http.unhandled_error')).toBe(false);
  }, 90_000);
});
