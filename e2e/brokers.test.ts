import { GraftClient } from '@graft/client';
import { type Agent, signRequest, TUNNEL_PATH } from '@graft/protocol';
import { apiRequest, expectApiError, type HubFixture, SimBroker, startHubFixture, eventually, msSince } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { findAgentProcesses, processCounts } from './support/agent-processes.js';
import { localAgents, type TestBroker, TestBrokers } from './support/test-brokers.js';

// A hub and two broker daemons as separate processes; agents are real shell commands.
let fixture: HubFixture;
let brokers: TestBrokers;
let admin: GraftClient;

beforeAll(async () => {
  fixture = await startHubFixture(inject('pgAdminUrl'));
  brokers = new TestBrokers(fixture.hub.url, fixture.hub.adminToken);
  admin = new GraftClient({ baseUrl: fixture.hub.url, token: fixture.hub.adminToken, timeoutMs: 5_000 });
});

afterAll(async () => {
  await brokers?.cleanup();
  await fixture?.stop();
});

/** Every agent of a project, as the hub sees it. */
async function agentsOf(projectId: string): Promise<Agent[]> {
  return (await admin.listAgents({ projectId, limit: 100 })).items;
}

describe('placement across two brokers', () => {
  let projectId: string;
  let a: TestBroker;
  let b: TestBroker;

  beforeAll(async () => {
    projectId = (await admin.registerProject({ name: 'placement' })).project.id;
    await admin.createTemplate({ name: 'sleeper', projectId, harness: 'command', command: ['sh', '-c', `sleep 300; : ${brokers.marker}`] });
    // Linked to the project only (no auto-provide), with 4 and 2 slots.
    [a, b] = await Promise.all([
      brokers.add('node-a', { register: { projectIds: [projectId] }, maxAgents: 4 }),
      brokers.add('node-b', { register: { projectIds: [projectId] }, maxAgents: 2 }),
    ]);
  });

  it('spreads agents by load, runs each once, and places a waiting agent when a slot frees', async () => {
    const created: Agent[] = [];
    for (let i = 0; i < 6; i++) created.push(await admin.createAgent({ projectId, name: `sleeper-${i}`, template: 'sleeper' }));
    // Least loaded first: the first two land on different brokers, and 6 agents fill 4 + 2 slots.
    expect(new Set(created.slice(0, 2).map((x) => x.brokerId))).toEqual(new Set([a.brokerId, b.brokerId]));
    const onA = created.filter((x) => x.brokerId === a.brokerId).map((x) => x.id);
    const onB = created.filter((x) => x.brokerId === b.brokerId).map((x) => x.id);
    expect([onA.length, onB.length]).toEqual([4, 2]);

    const start = performance.now();
    await eventually(
      async () => {
        const agents = await agentsOf(projectId);
        expect(agents.map((x) => [x.name, x.phase, x.activity])).toEqual(created.map((x) => [x.name, 'running', 'idle']));
      },
      { timeoutMs: 20_000 },
    );
    console.log(`6 agents running on two brokers ${msSince(start)} ms after the last create`);

    // Each broker holds exactly what the hub placed there, and each agent runs exactly one process.
    expect((await localAgents(a)).map((x) => x.agentId).sort()).toEqual([...onA].sort());
    expect((await localAgents(b)).map((x) => x.agentId).sort()).toEqual([...onB].sort());
    for (const l of [...(await localAgents(a)), ...(await localAgents(b))]) expect(l.phase).toBe('running');
    const counts = processCounts(brokers.marker);
    expect(Object.fromEntries(counts)).toEqual(Object.fromEntries(created.map((x) => [x.id, 1])));
    // The agent gets the hub's identity variables.
    const proc = findAgentProcesses(brokers.marker).find((p) => p.agentId === onB[0]);
    expect(proc?.env.GRAFT_PROJECT_ID).toBe(projectId);
    expect(proc?.env.GRAFT_HUB_URL).toBe(fixture.hub.url);
    expect(proc?.env.GRAFT_AGENT_TOKEN).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);

    // Every slot is taken: the seventh waits, with a reason a machine can read.
    const seventh = await admin.createAgent({ projectId, name: 'sleeper-6', template: 'sleeper' });
    expect({ brokerId: seventh.brokerId, phase: seventh.phase, pendingReason: seventh.pendingReason }).toEqual({ brokerId: null, phase: 'created', pendingReason: 'no_capacity' });
    expect((await admin.getAgent(seventh.id)).pendingReason).toBe('no_capacity');

    // Stopping an agent on B frees a slot there, and the waiting agent is placed without being asked.
    const victim = onB[0] ?? '';
    const stoppedAt = performance.now();
    await admin.agentAction(victim, 'stop');
    const placed = await eventually(
      async () => {
        const s = await admin.getAgent(seventh.id);
        expect({ brokerId: s.brokerId, phase: s.phase, pendingReason: s.pendingReason }).toEqual({ brokerId: b.brokerId, phase: 'running', pendingReason: null });
        return s;
      },
      { timeoutMs: 20_000 },
    );
    console.log(`waiting agent placed and running ${msSince(stoppedAt)} ms after a slot was freed`);
    expect(placed.activity).toBe('idle');
    expect((await admin.getAgent(victim)).phase).toBe('stopped');
    await eventually(
      () => {
        const now = processCounts(brokers.marker);
        expect(now.get(victim)).toBeUndefined();
        expect(now.get(seventh.id)).toBe(1);
        expect([...now.values()].reduce((x, y) => x + y, 0)).toBe(6);
      },
      { timeoutMs: 5_000 },
    );
    const listedB = await localAgents(b);
    expect(listedB.map((x) => [x.agentId, x.phase]).sort()).toEqual(
      [
        [victim, 'stopped'],
        [onB[1], 'running'],
        [seventh.id, 'running'],
      ].sort(),
    );
  });
});

describe('broker authentication', () => {
  /** The value of graft_signature_rejections_total for one reason on the hub's /metrics. */
  async function rejections(reason: string): Promise<number> {
    const text = await (await fetch(`${fixture.hub.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`graft_signature_rejections_total{reason="${reason}"}`));
    return line ? Number(line.split(' ').at(-1)) : 0;
  }

  it('refuses a second join with the same token', async () => {
    const reg = await admin.registerBroker({ name: 'join-twice' });
    const body = { brokerId: reg.brokerId, joinToken: reg.joinToken, hostname: 'n', version: 't', runtimes: ['process'], capacity: { maxAgents: 1 } };
    const first = await apiRequest(fixture.hub.url, null, 'POST', '/api/v1/brokers/join', body);
    expect(first.status).toBe(200);
    const again = await apiRequest(fixture.hub.url, null, 'POST', '/api/v1/brokers/join', body);
    expectApiError(again, 409, 'join_token_consumed');
  });

  it('refuses tunnels with a tampered signature, a replayed signature or an old timestamp, and counts each', async () => {
    const reg = await admin.registerBroker({ name: 'signer' });
    const joined = await admin.joinBroker({ brokerId: reg.brokerId, joinToken: reg.joinToken, hostname: 'n', version: 't', runtimes: ['process'], capacity: { maxAgents: 1 } });
    const dial = (headers: Record<string, string>) => new SimBroker({ hubUrl: fixture.hub.url, brokerId: joined.brokerId, secretKey: joined.secretKey, headers });
    const sign = (nowSecs?: number) =>
      signRequest({ method: 'GET', path: TUNNEL_PATH, brokerId: joined.brokerId, secret: joined.secretKey, ...(nowSecs === undefined ? {} : { nowSecs }) });
    const before = { bad: await rejections('bad_signature'), replay: await rejections('replayed_nonce'), skew: await rejections('clock_skew') };

    const signed = sign();
    const sig = signed['X-Graft-Signature'] ?? '';
    const tampered = { ...signed, 'X-Graft-Signature': `${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}` };
    await expect(dial(tampered).connect()).resolves.toEqual({ ok: false, status: 401, code: 'signature_invalid' });

    // The untampered headers open a tunnel once; the same headers a second time are a replay.
    const good = dial(signed);
    const outcome = await good.connect();
    expect(outcome.ok).toBe(true);
    await good.close();
    await expect(dial(signed).connect()).resolves.toEqual({ ok: false, status: 401, code: 'replayed_request' });

    await expect(dial(sign(Math.floor(Date.now() / 1000) - 600)).connect()).resolves.toEqual({ ok: false, status: 401, code: 'clock_skew' });

    expect({ bad: await rejections('bad_signature'), replay: await rejections('replayed_nonce'), skew: await rejections('clock_skew') }).toEqual({
      bad: before.bad + 1,
      replay: before.replay + 1,
      skew: before.skew + 1,
    });
  });

  it('refuses a replayed signed HTTP request', async () => {
    const reg = await admin.registerBroker({ name: 'http-signer' });
    const joined = await admin.joinBroker({ brokerId: reg.brokerId, joinToken: reg.joinToken, hostname: 'n', version: 't', runtimes: ['process'], capacity: { maxAgents: 1 } });
    const headers = signRequest({ method: 'GET', path: '/api/v1/brokers/self', brokerId: joined.brokerId, secret: joined.secretKey });
    const first = await apiRequest<{ id: string }>(fixture.hub.url, null, 'GET', '/api/v1/brokers/self', undefined, headers);
    expect({ status: first.status, id: first.body.id }).toEqual({ status: 200, id: joined.brokerId });
    expectApiError(await apiRequest(fixture.hub.url, null, 'GET', '/api/v1/brokers/self', undefined, headers), 401, 'replayed_request');
  });
});
