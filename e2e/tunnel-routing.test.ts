import { randomBytes, randomUUID } from 'node:crypto';
import { GraftClient } from '@graft/client';
import { createFreshDatabase, type FreshDatabase, type HubProcess, registerAndJoinBroker, SimBroker, startHubProcess, waitUntil } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

// Two hub replicas on one database and one Redis (a prefix of their own): a broker's tunnel is on
// replica A; what replica B is asked to do for that broker is forwarded to A and answered back,
// at once, instead of waiting for A's redelivery sweep (≥ 5 s).
let database: FreshDatabase;
let hubs: HubProcess[] = [];
const adminToken = randomBytes(32).toString('hex');
const masterKey = randomBytes(32).toString('hex');

beforeAll(async () => {
  database = await createFreshDatabase(inject('pgAdminUrl'));
  const env = { GRAFT_ADMIN_TOKEN: adminToken, GRAFT_MASTER_KEY: masterKey, REDIS_URL: inject('redisUrl'), GRAFT_REDIS_PREFIX: `routing-${randomUUID()}` };
  hubs = await Promise.all([0, 1].map(() => startHubProcess({ databaseUrl: database.url, env })));
});

afterAll(async () => {
  await Promise.all(hubs.map((h) => h.stop()));
  await database?.drop();
});

/** Reads a Server-Sent Events stream in the background: the events' data, parsed, as they come. */
function readEvents(url: string): { open: Promise<void>; events: Array<Record<string, unknown>>; abort(): void } {
  const events: Array<Record<string, unknown>> = [];
  const controller = new AbortController();
  const open = fetch(url, { headers: { authorization: `Bearer ${adminToken}` }, signal: controller.signal }).then((res) => {
    if (res.status !== 200 || !res.body) throw new Error(`event stream answered ${res.status}`);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    let buffered = '';
    void (async () => {
      for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffered += Buffer.from(piece).toString('utf8');
        for (let end = buffered.indexOf('\n\n'); end >= 0; end = buffered.indexOf('\n\n')) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const data = block.split('\n').find((l) => l.startsWith('data: '));
          if (data) events.push(JSON.parse(data.slice(6)) as Record<string, unknown>);
        }
      }
    })().catch(() => {});
  });
  return { open, events, abort: () => controller.abort() };
}

async function metric(hub: HubProcess, line: RegExp): Promise<number> {
  const text = await (await fetch(`${hub.url}/metrics`)).text();
  const m = text.split('\n').find((l) => line.test(l));
  return m ? Number(m.split(' ').at(-1)) : 0;
}

describe('tunnel routing across replicas (Redis)', () => {
  it("forwards commands issued on a replica that does not hold the broker's tunnel to the one that does, and the answer back", async () => {
    const [a, b] = hubs;
    if (!a || !b) throw new Error('two hubs expected');
    const joined = await registerAndJoinBroker(a.url, adminToken, { name: 'routed', autoProvide: true });
    const sim = new SimBroker({ hubUrl: a.url, brokerId: joined.brokerId, secretKey: joined.secretKey });
    try {
      expect((await sim.connect()).ok).toBe(true);
      const onB = new GraftClient({ baseUrl: b.url, token: adminToken });
      const project = (await onB.registerProject({ name: 'routed' })).project;
      await onB.createTemplate({ name: 't', projectId: project.id, harness: 'command', command: ['true'] });
      const routedBefore = await metric(b, /^graft_routed_commands_total\{outcome="ok"\}/);
      const started = Date.now();
      const agent = await onB.createAgent({ projectId: project.id, name: 'a', template: 't' });
      expect(agent.brokerId).toBe(joined.brokerId);
      await sim.waitFor(() => sim.commands.some((c) => c.agent.agentId === agent.id && c.command === 'create'), 3_000);
      // B applied the broker's answer itself (its result carries the observed state): no sweep involved.
      await waitUntil(async () => (await onB.getAgent(agent.id)).phase === 'running', 3_000);
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(await metric(b, /^graft_routed_commands_total\{outcome="ok"\}/)).toBeGreaterThan(routedBefore);
      expect(b.logs.some((l) => l.event === 'dispatch.deferred' && l.agentId === agent.id)).toBe(false);
      // A lifecycle action on B reaches the broker the same way.
      await onB.agentAction(agent.id, 'stop');
      await sim.waitFor(() => sim.commands.some((c) => c.agent.agentId === agent.id && c.command === 'stop'), 3_000);
    } finally {
      await sim.close();
    }
  });

  it('answers unreachable at once (no forward) when no replica holds the tunnel, and the agent waits for reconciliation', async () => {
    const [a, b] = hubs;
    if (!a || !b) throw new Error('two hubs expected');
    const joined = await registerAndJoinBroker(a.url, adminToken, { name: 'gone', autoProvide: true });
    const sim = new SimBroker({ hubUrl: a.url, brokerId: joined.brokerId, secretKey: joined.secretKey });
    expect((await sim.connect()).ok).toBe(true);
    const onB = new GraftClient({ baseUrl: b.url, token: adminToken });
    const project = (await onB.registerProject({ name: 'gone' })).project;
    await onB.createTemplate({ name: 't', projectId: project.id, harness: 'command', command: ['true'] });
    const agent = await onB.createAgent({ projectId: project.id, name: 'a', template: 't', brokerId: joined.brokerId });
    await waitUntil(async () => (await onB.getAgent(agent.id)).phase === 'running', 3_000);
    await sim.close();
    // The tunnel closed on A, which released its claim: B does not wait out a deadline.
    const unreachableBefore = await metric(b, /^graft_routed_commands_total\{outcome="unreachable"\}/);
    await onB.agentAction(agent.id, 'stop');
    await waitUntil(async () => (await metric(b, /^graft_routed_commands_total\{outcome="unreachable"\}/)) > unreachableBefore, 3_000);
    // Reconnecting (to B this time) delivers the desired state in the welcome.
    const again = new SimBroker({ hubUrl: b.url, brokerId: joined.brokerId, secretKey: joined.secretKey });
    try {
      const dial = await again.connect();
      expect(dial.ok && dial.welcome.desired.find((d) => d.agentId === agent.id)?.desiredState).toBe('stopped');
    } finally {
      await again.close();
    }
  });

  it("streams agent state changes and broker presence made on one replica to a reader on another (the event bus)", async () => {
    const [a, b] = hubs;
    if (!a || !b) throw new Error('two hubs expected');
    const onA = new GraftClient({ baseUrl: a.url, token: adminToken });
    const project = (await onA.registerProject({ name: 'watched' })).project;
    await onA.createTemplate({ name: 't', projectId: project.id, harness: 'command', command: ['true'] });
    const agentEvents = readEvents(`${b.url}/api/v1/projects/${project.id}/events?maxSecs=10`);
    const brokerEvents = readEvents(`${b.url}/api/v1/admin/broker-events?maxSecs=10`);
    await Promise.all([agentEvents.open, brokerEvents.open]);
    const joined = await registerAndJoinBroker(a.url, adminToken, { name: 'watched', projectIds: [project.id] });
    const sim = new SimBroker({ hubUrl: a.url, brokerId: joined.brokerId, secretKey: joined.secretKey });
    try {
      expect((await sim.connect()).ok).toBe(true);
      const replicaOfA = a.logs.find((l) => l.event === 'hub.listening')?.replicaId;
      await waitUntil(async () => brokerEvents.events.some((e) => e.type === 'broker.presence' && e.brokerId === joined.brokerId && e.state === 'connected' && e.replicaId === replicaOfA), 5_000);
      const agent = await onA.createAgent({ projectId: project.id, name: 'w', template: 't' });
      await waitUntil(async () => agentEvents.events.some((e) => e.type === 'agent.state' && e.agentId === agent.id && e.phase === 'running'), 5_000);
      const phases = agentEvents.events.filter((e) => e.agentId === agent.id).map((e) => e.phase);
      // The broker's reports in the order they were written: provisioning and starting before running.
      expect(phases.indexOf('provisioning')).toBeLessThan(phases.indexOf('running'));
      expect(agentEvents.events.every((e) => e.projectId === project.id)).toBe(true);
    } finally {
      await sim.close();
    }
    await waitUntil(async () => brokerEvents.events.some((e) => e.brokerId === joined.brokerId && e.state === 'disconnected'), 5_000);
    agentEvents.abort();
    brokerEvents.abort();
  });

  // Last: it kills replica A.
  it('fails a forwarded command within seconds, not at its deadline, when the replica holding the tunnel dies', async () => {
    const [a, b] = hubs;
    if (!a || !b) throw new Error('two hubs expected');
    const joined = await registerAndJoinBroker(a.url, adminToken, { name: 'orphaned', autoProvide: true });
    const sim = new SimBroker({ hubUrl: a.url, brokerId: joined.brokerId, secretKey: joined.secretKey });
    try {
      expect((await sim.connect()).ok).toBe(true);
      const onB = new GraftClient({ baseUrl: b.url, token: adminToken });
      const project = (await onB.registerProject({ name: 'orphaned' })).project;
      await onB.createTemplate({ name: 't', projectId: project.id, harness: 'command', command: ['true'] });
      const agent = await onB.createAgent({ projectId: project.id, name: 'a', template: 't', brokerId: joined.brokerId });
      await waitUntil(async () => (await onB.getAgent(agent.id)).phase === 'running', 3_000);
      // A dies without a word: its claim on the tunnel stays in Redis until it expires (3 heartbeats).
      await a.stop('SIGKILL');
      const sent = Date.now();
      await onB.agentAction(agent.id, 'stop');
      await waitUntil(async () => b.logs.some((l) => l.event === 'mesh.owner_gone' && l.agentId === agent.id), 8_000);
      // Well inside the 10 s request deadline: B noticed A was gone (its presence lapsed) and gave up.
      expect(Date.now() - sent).toBeLessThan(8_000);
      expect(b.logs.some((l) => l.event === 'mesh.command_timeout' && l.agentId === agent.id)).toBe(false);
    } finally {
      await sim.close();
    }
  }, 30_000);
});
