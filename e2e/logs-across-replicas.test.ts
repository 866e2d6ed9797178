import { randomBytes } from 'node:crypto';
import { GraftClient } from '@graft/client';
import { createFreshDatabase, eventually, type FreshDatabase, type HubProcess, startHubProcess } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { TestBrokers } from './support/test-brokers.js';

// Two hub replicas on one database and one Redis: the broker's tunnel is on replica A, a reader
// follows the agent's log on replica B, live (the event bus is Redis pub/sub).
let database: FreshDatabase;
let hubs: HubProcess[] = [];
let brokers: TestBrokers;
const adminToken = randomBytes(32).toString('hex');
const masterKey = randomBytes(32).toString('hex');

beforeAll(async () => {
  database = await createFreshDatabase(inject('pgAdminUrl'));
  const env = { GRAFT_ADMIN_TOKEN: adminToken, GRAFT_MASTER_KEY: masterKey, REDIS_URL: inject('redisUrl'), GRAFT_REDIS_PREFIX: `logs-replicas-${randomBytes(6).toString('hex')}` };
  hubs = [await startHubProcess({ databaseUrl: database.url, env }), await startHubProcess({ databaseUrl: database.url, env })];
  brokers = new TestBrokers(hubs[0]?.url ?? '', adminToken);
});

afterAll(async () => {
  await brokers?.cleanup();
  await Promise.all(hubs.map((h) => h.stop()));
  await database?.drop();
});

describe('logs across hub replicas', () => {
  it('a reader on another replica than the tunnel gets the output live and its follow ends with the run', async () => {
    const [a, b] = hubs;
    if (!a || !b) throw new Error('two hubs expected');
    const admin = new GraftClient({ baseUrl: a.url, token: adminToken, timeoutMs: 10_000 });
    const projectId = (await admin.registerProject({ name: 'logs-replicas' })).project.id;
    await brokers.add('replica-node', { register: { projectIds: [projectId] } });
    await admin.createTemplate({ name: 'ticker', projectId, harness: 'command', command: ['sh', '-c', `for i in 1 2 3 4 5 6; do echo "tick $i"; sleep 0.4; done; : ${brokers.marker}`] });
    const agent = await admin.createAgent({ projectId, name: 'ticker', template: 'ticker' });
    await eventually(async () => expect((await admin.getAgent(agent.id)).phase).toBe('running'), { timeoutMs: 15_000 });
    const started = Date.now();
    const res = await fetch(`${b.url}/api/v1/agents/${agent.id}/logs?follow=1`, { headers: { authorization: `Bearer ${adminToken}` } });
    const arrivals: Array<{ at: number; text: string }> = [];
    for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) arrivals.push({ at: Date.now() - started, text: Buffer.from(piece).toString('utf8') });
    expect(arrivals.map((x) => x.text).join('')).toBe('tick 1\ntick 2\ntick 3\ntick 4\ntick 5\ntick 6\n');
    // Live: the early ticks arrived well before the last one was written (6 × 0.4 s), not all at the end.
    const firstTick = arrivals.find((x) => x.text.includes('tick 2'));
    const last = arrivals.at(-1);
    expect(firstTick && last && last.at - firstTick.at).toBeGreaterThan(800);
  });
});
