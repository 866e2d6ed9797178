import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GraftClient } from '@graft/client';
import type { Agent, Broker } from '@graft/protocol';
import { apiRequest, type HubFixture, startHubFixture, eventually, msSince } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { findAgentProcesses, processCounts } from './support/agent-processes.js';
import { localAgents, type TestBroker, TestBrokers } from './support/test-brokers.js';

// Lifecycle of real agent processes on real brokers: delete, drain, suspend/resume, restart, exits.
let fixture: HubFixture;
let brokers: TestBrokers;
let admin: GraftClient;
let projectId: string;
let e: TestBroker;
let f: TestBroker;

beforeAll(async () => {
  fixture = await startHubFixture(inject('pgAdminUrl'));
  brokers = new TestBrokers(fixture.hub.url, fixture.hub.adminToken);
  admin = new GraftClient({ baseUrl: fixture.hub.url, token: fixture.hub.adminToken, timeoutMs: 5_000 });
  projectId = (await admin.registerProject({ name: 'lifecycle' })).project.id;
  const m = brokers.marker;
  await Promise.all([
    // Each run appends whether it was resumed to a file in its workspace.
    admin.createTemplate({ name: 'sleeper', projectId, harness: 'command', command: ['sh', '-c', `echo "resume=\${GRAFT_RESUME:-0}" >>runs.txt; sleep 300; : ${m}`] }),
    admin.createTemplate({ name: 'fails', projectId, harness: 'command', command: ['sh', '-c', `echo first line; echo second line; echo third line >&2; exit 3; : ${m}`] }),
    admin.createTemplate({ name: 'finishes', projectId, harness: 'command', command: ['sh', '-c', `echo all done; exit 0; : ${m}`] }),
  ]);
  [e, f] = await Promise.all([brokers.add('node-e', { register: { autoProvide: true } }), brokers.add('node-f', { register: { autoProvide: true } })]);
});

afterAll(async () => {
  await brokers?.cleanup();
  await fixture?.stop();
});

function brokerOf(agent: Agent): TestBroker {
  const b = brokers.all.find((x) => x.brokerId === agent.brokerId);
  if (!b) throw new Error(`agent ${agent.name} is on no known broker (${agent.brokerId})`);
  return b;
}

/** Polls until the agent is in `phase`; returns it. */
function phaseOf(id: string, phase: Agent['phase'], timeoutMs = 15_000): Promise<Agent> {
  return eventually(
    async () => {
      const a = await admin.getAgent(id);
      expect(a.phase).toBe(phase);
      return a;
    },
    { timeoutMs },
  );
}

/** The agent's workspace directory on its broker. */
function workspace(agent: Agent): string {
  return join(brokerOf(agent).dataDir, 'agents', 'process', agent.id, 'workspace');
}

describe('delete', () => {
  it('stops and removes an agent on its broker, then forgets it on the hub', async () => {
    const agent = await admin.createAgent({ projectId, name: 'doomed', template: 'sleeper' });
    await phaseOf(agent.id, 'running');
    const b = brokerOf(agent);
    const dir = join(b.dataDir, 'agents', 'process', agent.id);
    expect(existsSync(join(dir, 'workspace', 'runs.txt'))).toBe(true);
    expect(processCounts(brokers.marker).get(agent.id)).toBe(1);

    const start = performance.now();
    const reply = await apiRequest<Agent>(fixture.hub.url, fixture.hub.adminToken, 'DELETE', `/api/v1/agents/${agent.id}`);
    expect({ status: reply.status, desiredState: reply.body.desiredState }).toEqual({ status: 202, desiredState: 'deleted' });
    await eventually(async () => expect((await apiRequest(fixture.hub.url, fixture.hub.adminToken, 'GET', `/api/v1/agents/${agent.id}`)).status).toBe(404), {
      timeoutMs: 15_000,
    });
    console.log(`deleted agent gone from the hub ${msSince(start)} ms after DELETE`);
    expect(processCounts(brokers.marker).get(agent.id)).toBeUndefined();
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(join(b.dataDir, 'agents-state', `${agent.id}.json`))).toBe(false);
    expect((await localAgents(b)).map((x) => x.agentId)).not.toContain(agent.id);
  });
});

describe('drain', () => {
  it('places new agents elsewhere while a broker drains, and on it again once undrained', async () => {
    const drained = await apiRequest<Broker>(fixture.hub.url, fixture.hub.adminToken, 'POST', `/api/v1/brokers/${e.brokerId}/drain`);
    expect({ status: drained.status, state: drained.body.status, draining: drained.body.draining }).toEqual({ status: 200, state: 'draining', draining: true });
    const created: Agent[] = [];
    for (let i = 0; i < 3; i++) created.push(await admin.createAgent({ projectId, name: `while-draining-${i}`, template: 'sleeper' }));
    expect(created.map((x) => x.brokerId)).toEqual([f.brokerId, f.brokerId, f.brokerId]);
    // Asked for by name, the drained broker makes the agent wait, and says why.
    const pinned = await admin.createAgent({ projectId, name: 'pinned-to-e', template: 'sleeper', brokerId: e.brokerId });
    expect({ brokerId: pinned.brokerId, pendingReason: pinned.pendingReason }).toEqual({ brokerId: null, pendingReason: 'draining' });

    const undrained = await apiRequest<Broker>(fixture.hub.url, fixture.hub.adminToken, 'POST', `/api/v1/brokers/${e.brokerId}/undrain`);
    expect({ status: undrained.status, state: undrained.body.status }).toEqual({ status: 200, state: 'online' });
    const placed = await eventually(
      async () => {
        const a = await admin.getAgent(pinned.id);
        expect({ brokerId: a.brokerId, phase: a.phase, pendingReason: a.pendingReason }).toEqual({ brokerId: e.brokerId, phase: 'running', pendingReason: null });
        return a;
      },
      { timeoutMs: 15_000 },
    );
    expect((await localAgents(e)).map((x) => x.agentId)).toContain(placed.id);
    // E is now the less loaded one again.
    expect((await admin.createAgent({ projectId, name: 'after-undrain', template: 'sleeper' })).brokerId).toBe(e.brokerId);
    for (const a of created) await phaseOf(a.id, 'running');
  });
});

describe('suspend, start and restart', () => {
  it('resumes a suspended agent in its kept workspace and restarts it fresh', async () => {
    const agent = await admin.createAgent({ projectId, name: 'resumable', template: 'sleeper' });
    await phaseOf(agent.id, 'running');
    const runs = join(workspace(agent), 'runs.txt');
    const readRuns = () => (existsSync(runs) ? readFileSync(runs, 'utf8') : '');
    await eventually(() => expect(readRuns()).toBe('resume=0\n'), { timeoutMs: 5_000 });
    const firstPid = findAgentProcesses(brokers.marker).find((p) => p.agentId === agent.id)?.pid;
    expect(firstPid).toBeDefined();

    expect((await admin.agentAction(agent.id, 'suspend')).desiredState).toBe('suspended');
    await phaseOf(agent.id, 'suspended');
    expect(processCounts(brokers.marker).get(agent.id)).toBeUndefined();
    expect(readRuns()).toBe('resume=0\n');

    // Start of a suspended agent resumes: same workspace, GRAFT_RESUME=1.
    await admin.agentAction(agent.id, 'start');
    await phaseOf(agent.id, 'running');
    await eventually(() => expect(readRuns()).toBe('resume=0\nresume=1\n'), { timeoutMs: 5_000 });
    const resumed = findAgentProcesses(brokers.marker).filter((p) => p.agentId === agent.id);
    expect(resumed.map((p) => p.env.GRAFT_RESUME)).toEqual(['1']);
    expect(resumed[0]?.pid).not.toBe(firstPid);

    // Restart: stop, then a fresh start in a wiped workspace, without GRAFT_RESUME.
    const generation = (await admin.getAgent(agent.id)).generation;
    const restarted = await admin.agentAction(agent.id, 'restart');
    expect(restarted.generation).toBe(generation + 1);
    await eventually(
      async () => {
        expect((await admin.getAgent(agent.id)).phase).toBe('running');
        expect(readRuns()).toBe('resume=0\n');
        const procs = findAgentProcesses(brokers.marker).filter((p) => p.agentId === agent.id);
        expect(procs).toHaveLength(1);
        expect(procs[0]?.pid).not.toBe(resumed[0]?.pid);
        expect(procs[0]?.env.GRAFT_RESUME).toBeUndefined();
      },
      { timeoutMs: 15_000 },
    );
    const local = (await localAgents(brokerOf(agent))).find((x) => x.agentId === agent.id);
    expect({ phase: local?.phase, generation: local?.generation }).toEqual({ phase: 'running', generation: generation + 1 });
  });
});

describe('agents that end by themselves', () => {
  it('ends in error with the exit code and the last output lines when the command exits 3', async () => {
    const agent = await admin.createAgent({ projectId, name: 'exits-3', template: 'fails' });
    const failed = await phaseOf(agent.id, 'error');
    expect(failed.activity).toBeNull();
    expect(failed.detail).toMatch(/^exit code 3; last output:\n/);
    expect(failed.detail).toContain('first line\nsecond line\nthird line');
    const local = (await localAgents(brokerOf(agent))).find((x) => x.agentId === agent.id);
    expect({ phase: local?.phase, exitCode: local?.exitCode }).toEqual({ phase: 'error', exitCode: 3 });
    // An agent in error may be started again: the broker runs the new generation, which fails the same way.
    expect((await admin.agentAction(agent.id, 'start')).generation).toBe(failed.generation + 1);
    await eventually(
      async () => {
        const again = (await localAgents(brokerOf(agent))).find((x) => x.agentId === agent.id);
        expect({ phase: again?.phase, generation: again?.generation }).toEqual({ phase: 'error', generation: failed.generation + 1 });
        expect((await admin.getAgent(agent.id)).phase).toBe('error');
      },
      { timeoutMs: 15_000 },
    );
  });

  it('ends stopped when the command exits 0', async () => {
    const agent = await admin.createAgent({ projectId, name: 'exits-0', template: 'finishes' });
    const done = await phaseOf(agent.id, 'stopped');
    expect({ activity: done.activity, detail: done.detail, desiredState: done.desiredState }).toEqual({ activity: null, detail: 'exited with code 0', desiredState: 'running' });
    expect(readFileSync(join(brokerOf(agent).dataDir, 'agents', 'process', agent.id, 'stdout.log'), 'utf8')).toBe('all done\n');
  });
});
