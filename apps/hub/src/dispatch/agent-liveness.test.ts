import { GraftClient } from '@graft/client';
import type { Agent } from '@graft/protocol';
import { type HubFixture, registerAndJoinBroker, SimBroker, startHubFixture, waitUntil } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

let fx: HubFixture;
let admin: GraftClient;
let sim: SimBroker;
let projectId: string;
let n = 0;

async function metric(label: string): Promise<number> {
  const text = await (await fetch(`${fx.hub.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`graft_agent_liveness_transitions_total{to="${label}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/** A running agent on the simulated broker, and a client holding its own token. */
async function runningAgent(): Promise<{ agent: Agent; self: GraftClient }> {
  const agent = await admin.createAgent({ projectId, name: `a${++n}`, template: 't' });
  await waitUntil(async () => (await admin.getAgent(agent.id)).phase === 'running');
  const token = sim.commands.find((c) => c.agent.agentId === agent.id)?.agent.spec.env.GRAFT_AGENT_TOKEN ?? '';
  return { agent, self: new GraftClient({ baseUrl: fx.hub.url, token }) };
}

const activityOf = async (id: string) => (await admin.getAgent(id)).activity;

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'), {
    env: { GRAFT_BROKER_HEARTBEAT_MS: '300', GRAFT_AGENT_OFFLINE_AFTER_SECS: '1.5', GRAFT_AGENT_STALLED_AFTER_SECS: '1' },
  });
  admin = new GraftClient({ baseUrl: fx.hub.url, token: fx.hub.adminToken });
  projectId = (await admin.registerProject({ name: 'liveness' })).project.id;
  await admin.createTemplate({ name: 't', projectId, harness: 'command', command: ['true'] });
  const b = await registerAndJoinBroker(fx.hub.url, fx.hub.adminToken, { name: 'live', autoProvide: true });
  sim = new SimBroker({ hubUrl: fx.hub.url, brokerId: b.brokerId, secretKey: b.secretKey });
  expect((await sim.connect()).ok).toBe(true);
}, 60_000);

afterAll(async () => {
  await sim?.close();
  await fx?.stop();
});

describe('agent liveness sweeps', () => {
  it('a busy agent whose activity does not change is stalled, keeping what it stalled from; its next report replaces it', async () => {
    const { agent, self } = await runningAgent();
    const before = await metric('stalled');
    await self.reportStatus(agent.id, { activity: 'executing', detail: 'npm test' });
    const started = Date.now();
    // Heartbeats keep it online (it is alive), but they do not count as activity.
    const beat = setInterval(() => void self.agentHeartbeat(agent.id).catch(() => {}), 300);
    try {
      const stalled = await waitUntil(async () => {
        const a = await admin.getAgent(agent.id);
        return a.activity === 'stalled' ? a : undefined;
      });
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      expect(stalled).toMatchObject({ priorActivity: 'executing', detail: 'npm test' });
      expect(await metric('stalled')).toBe(before + 1);
      await self.reportStatus(agent.id, { activity: 'thinking' });
      expect(await admin.getAgent(agent.id)).toMatchObject({ activity: 'thinking' });
    } finally {
      clearInterval(beat);
    }
  });

  it('in a project with autoSuspendStalled a stalled agent is suspended through its broker; elsewhere it keeps running', async () => {
    const auto = (await admin.registerProject({ name: 'liveness-auto' })).project.id;
    expect(await admin.updateProject(auto, { autoSuspendStalled: true })).toMatchObject({ autoSuspendStalled: true });
    await admin.createTemplate({ name: 't', projectId: auto, harness: 'command', command: ['true'] });
    const before = await metric('suspended');
    const agent = await admin.createAgent({ projectId: auto, name: 'hung', template: 't' });
    await waitUntil(async () => (await admin.getAgent(agent.id)).phase === 'running');
    const token = sim.commands.find((c) => c.agent.agentId === agent.id)?.agent.spec.env.GRAFT_AGENT_TOKEN ?? '';
    const self = new GraftClient({ baseUrl: fx.hub.url, token });
    const { agent: other, self: otherSelf } = await runningAgent();
    await self.reportStatus(agent.id, { activity: 'executing', detail: 'hangs here' });
    await otherSelf.reportStatus(other.id, { activity: 'executing', detail: 'hangs too' });
    const suspended = await waitUntil(async () => {
      const a = await admin.getAgent(agent.id);
      return a.phase === 'suspended' ? a : undefined;
    });
    expect(suspended).toMatchObject({ desiredState: 'suspended' });
    expect(sim.commands.filter((c) => c.agent.agentId === agent.id).map((c) => c.command)).toEqual(['create', 'suspend']);
    expect(await metric('suspended')).toBe(before + 1);
    // The project without the setting: stalled, still wanted running.
    expect(await admin.getAgent(other.id)).toMatchObject({ activity: 'stalled', desiredState: 'running', phase: 'running' });
  });

  it('idle and waiting agents never stall', async () => {
    const { agent: idle, self } = await runningAgent();
    const { agent: waiting, self: asker } = await runningAgent();
    await asker.reportStatus(waiting.id, { activity: 'waiting_for_input', detail: 'which branch?' });
    const beat = setInterval(() => {
      void self.agentHeartbeat(idle.id).catch(() => {});
      void asker.agentHeartbeat(waiting.id).catch(() => {});
    }, 300);
    try {
      await new Promise((r) => setTimeout(r, 2_000));
      expect(await activityOf(idle.id)).toBe('idle');
      expect(await activityOf(waiting.id)).toBe('waiting_for_input');
    } finally {
      clearInterval(beat);
    }
  });

  it('an agent that reported before and then falls silent goes offline, and comes back with its activity on a heartbeat', async () => {
    const { agent, self } = await runningAgent();
    await self.reportStatus(agent.id, { activity: 'waiting_for_input', detail: 'which branch?' });
    const silentSince = Date.now();
    await waitUntil(async () => (await activityOf(agent.id)) === 'offline');
    expect(Date.now() - silentSince).toBeGreaterThanOrEqual(1_400);
    expect((await admin.getAgent(agent.id)).priorActivity).toBe('waiting_for_input');
    await self.agentHeartbeat(agent.id);
    const back = await waitUntil(async () => {
      const a = await admin.getAgent(agent.id);
      return a.activity !== 'offline' ? a : undefined;
    });
    expect(back).toMatchObject({ activity: 'waiting_for_input', priorActivity: null });
  });

  it('an agent that never reported (a plain command) is never marked offline by its own silence', async () => {
    const { agent } = await runningAgent();
    await new Promise((r) => setTimeout(r, 2_500));
    expect(await activityOf(agent.id)).toBe('idle');
  });
});
