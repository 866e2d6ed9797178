import { randomUUID } from 'node:crypto';
import { GraftApiError, GraftClient } from '@graft/client';
import { Agent, type AgentStatusResponse, type ErrorBody } from '@graft/protocol';
import { apiFailure, apiRequest, type HubFixture, startHubFixture } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

let fx: HubFixture;
let admin: GraftClient;
let alice: GraftClient;
let bob: GraftClient;
let carol: GraftClient;
let aliceId: string;
let bobId: string;
let aliceToken: string;
let projectA: string;
let projectB: string;
let workerId: string;
let globalBaseId: string;

const failure = apiFailure;

/** Raw request, for asserting exact status codes the typed client hides. */
const call = (method: string, path: string, token: string, body?: unknown) => apiRequest(fx.hub.url, token, method, path, body);

let agentSeq = 0;
/** A fresh agent in project A from the worker template. */
async function newAgent(client: GraftClient = alice, projectId = projectA): Promise<Agent> {
  agentSeq += 1;
  return client.createAgent({ projectId, name: `agent-${agentSeq}`, template: 'worker' });
}

/** A client holding the agent's own token (minted by alice, the project admin). */
async function asAgent(agentId: string): Promise<GraftClient> {
  const tok = await alice.mintAgentToken(agentId);
  expect(tok.agentId).toBe(agentId);
  return alice.withToken(tok.token);
}

/** A fresh agent already reported into phase running (activity idle). */
async function runningAgent(): Promise<{ agent: Agent; self: GraftClient }> {
  const agent = await newAgent();
  const self = await asAgent(agent.id);
  for (const phase of ['provisioning', 'starting', 'running'] as const) await self.reportStatus(agent.id, { phase });
  return { agent, self };
}

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  admin = new GraftClient({ baseUrl: fx.hub.url, token: fx.hub.adminToken });
  const anon = new GraftClient({ baseUrl: fx.hub.url });
  const [a, b, c] = await Promise.all([anon.devLogin('alice@agents.test'), anon.devLogin('bob@agents.test'), anon.devLogin('carol@agents.test')]);
  aliceId = a.user.id;
  bobId = b.user.id;
  aliceToken = a.token;
  alice = anon.withToken(a.token);
  bob = anon.withToken(b.token);
  carol = anon.withToken(c.token);
  projectA = (await alice.registerProject({ name: 'agents-a' })).project.id;
  projectB = (await bob.registerProject({ name: 'agents-b' })).project.id;
  await alice.putMember(projectA, bobId, 'member');
  await alice.putMember(projectA, c.user.id, 'viewer');
  const worker = await alice.createTemplate({ name: 'worker', projectId: projectA, harness: 'command', command: ['v1'] });
  await alice.createTemplateVersion(worker.id, { harness: 'command', command: ['v2'] });
  workerId = worker.id;
  globalBaseId = (await admin.createTemplate({ name: 'base', harness: 'script' })).id;
});
afterAll(async () => {
  await fx?.stop();
});

describe('agent creation', () => {
  it('creates an agent waiting for a broker, with every documented field', async () => {
    const r = await call('POST', '/api/v1/agents', aliceToken, {
      projectId: projectA,
      name: 'shape',
      template: 'worker',
      task: 'write the tests',
      labels: { team: 'core' },
    });
    expect(r.status).toBe(201);
    const agent = r.body as Agent;
    expect(agent).toEqual({
      id: expect.stringMatching(UUID_RE),
      name: 'shape',
      projectId: projectA,
      templateId: workerId,
      templateVersion: 2,
      phase: 'created',
      activity: null,
      priorActivity: null,
      detail: null,
      desiredState: 'running',
      generation: 1,
      brokerId: null,
      pendingReason: 'no_broker',
      task: 'write the tests',
      labels: { team: 'core' },
      createdBy: aliceId,
      createdAt: expect.stringMatching(ISO_RE),
      updatedAt: expect.stringMatching(ISO_RE),
      lastSeenAt: null,
    });
    expect(await alice.getAgent(agent.id)).toEqual(agent);
  });

  it('resolves the template by name, by id, and by name@version or id@version (pinned)', async () => {
    const byName = await alice.createAgent({ projectId: projectA, name: 'by-name', template: 'worker' });
    expect([byName.templateId, byName.templateVersion]).toEqual([workerId, 2]);
    const byId = await alice.createAgent({ projectId: projectA, name: 'by-id', template: workerId });
    expect([byId.templateId, byId.templateVersion]).toEqual([workerId, 2]);
    const byIdUpper = await alice.createAgent({ projectId: projectA, name: 'by-id-upper', template: workerId.toUpperCase() });
    expect(byIdUpper.templateId).toBe(workerId);
    const pinned = await alice.createAgent({ projectId: projectA, name: 'pinned', template: 'worker@1' });
    expect([pinned.templateId, pinned.templateVersion]).toEqual([workerId, 1]);
    const pinnedId = await alice.createAgent({ projectId: projectA, name: 'pinned-id', template: `${workerId}@1` });
    expect([pinnedId.templateId, pinnedId.templateVersion]).toEqual([workerId, 1]);
    const global = await alice.createAgent({ projectId: projectA, name: 'from-global', template: 'base' });
    expect(global.templateId).toBe(globalBaseId);
  });

  it('answers 404 for an unknown template, a version beyond the latest, or another project\'s template', async () => {
    for (const template of ['nope', 'worker@3', `${workerId}@99`, randomUUID()]) {
      const e = await failure(alice.createAgent({ projectId: projectA, name: 'never', template }));
      expect(e.status, template).toBe(404);
      expect(e.code, template).toBe('not_found');
      expect(e.details).toEqual({ field: 'template' });
    }
    // Project A's template is invisible from project B, by name and by id.
    for (const template of ['worker', workerId]) {
      const e = await failure(bob.createAgent({ projectId: projectB, name: 'never', template }));
      expect(e.status, template).toBe(404);
      expect(e.code, template).toBe('not_found');
    }
  });

  it("prefers the project's own template over a global one of the same name", async () => {
    const global = await admin.createTemplate({ name: 'shadowed', harness: 'command' });
    const local = await alice.createTemplate({ name: 'shadowed', projectId: projectA, harness: 'script' });
    const inA = await alice.createAgent({ projectId: projectA, name: 'shadow-a', template: 'shadowed' });
    expect(inA.templateId).toBe(local.id);
    const inB = await bob.createAgent({ projectId: projectB, name: 'shadow-b', template: 'shadowed' });
    expect(inB.templateId).toBe(global.id);
  });

  it('refuses a duplicate name in the project with 409, but allows it in another project', async () => {
    await alice.createAgent({ projectId: projectA, name: 'twin', template: 'worker' });
    const e = await failure(alice.createAgent({ projectId: projectA, name: 'twin', template: 'base' }));
    expect(e.status).toBe(409);
    expect(e.code).toBe('conflict');
    expect(e.details).toEqual({ field: 'name' });
    const other = await bob.createAgent({ projectId: projectB, name: 'twin', template: 'base' });
    expect(other.projectId).toBe(projectB);
  });

  it('answers 404 for an explicit brokerId, since no broker is registered', async () => {
    const err = await failure(alice.createAgent({ projectId: projectA, name: 'pinned-broker', template: 'worker', brokerId: randomUUID() }));
    expect([err.status, err.code]).toEqual([404, 'not_found']);
    expect(err.details).toEqual({ field: 'brokerId' });
  });

  it('keeps pendingReason in step with the desired state of an unplaced agent', async () => {
    const agent = await newAgent();
    expect(agent.pendingReason).toBe('no_broker');
    const stopped = await alice.agentAction(agent.id, 'stop');
    expect([stopped.phase, stopped.desiredState, stopped.pendingReason]).toEqual(['stopped', 'stopped', null]);
    const started = await alice.agentAction(agent.id, 'start');
    expect([started.phase, started.desiredState, started.pendingReason, started.generation]).toEqual(['stopped', 'running', 'no_broker', 3]);
  });

  it('lets members create agents but not viewers or non-members', async () => {
    const byMember = await bob.createAgent({ projectId: projectA, name: 'bobs-agent', template: 'worker' });
    expect(byMember.createdBy).toBe(bobId);
    const viewer = await failure(carol.createAgent({ projectId: projectA, name: 'carols-agent', template: 'worker' }));
    expect([viewer.status, viewer.code]).toEqual([403, 'forbidden']);
    const outsider = await failure(carol.createAgent({ projectId: projectB, name: 'carols-agent', template: 'base' }));
    expect([outsider.status, outsider.code]).toEqual([404, 'not_found']);
  });
});

describe('agent reads and lists', () => {
  it('answers every agent response in exactly the protocol Agent shape, the same from writes and reads', async () => {
    const strict = Agent.strict();
    const created = await alice.createAgent({ projectId: projectA, name: 'same-shape', template: 'worker', task: 'ünïcode "quoted" \\ task', labels: { team: 'core', 'x.y/z': '' } });
    expect(strict.parse(created)).toEqual(created);
    expect(created.createdAt).toMatch(ISO_RE);
    expect(await alice.getAgent(created.id)).toEqual(created);
    const self = await asAgent(created.id);
    for (const phase of ['provisioning', 'starting', 'running'] as const) await self.reportStatus(created.id, { phase, detail: `in ${phase}` });
    // An action answers with the hub's own mapping; a read right after must agree field by field.
    const suspended = await alice.agentAction(created.id, 'suspend');
    expect(suspended.lastSeenAt).not.toBeNull();
    expect(suspended.generation).toBe(2);
    expect(strict.parse(suspended)).toEqual(suspended);
    const read = await alice.getAgent(created.id);
    expect(read).toEqual(suspended);
    const listed = (await alice.listAgents({ projectId: projectA, limit: 500 })).items.find((a) => a.id === created.id);
    expect(listed).toEqual(suspended);
    expect(await self.getAgent(created.id)).toEqual(suspended);
  });

  it('answers 400 for a non-uuid id and 404 for an unknown or invisible agent', async () => {
    const bad = await failure(alice.getAgent('not-a-uuid'));
    expect([bad.status, bad.code]).toEqual([400, 'validation_error']);
    const unknown = await failure(alice.getAgent(randomUUID()));
    expect([unknown.status, unknown.code]).toEqual([404, 'not_found']);
    const inB = await bob.createAgent({ projectId: projectB, name: 'hidden', template: 'base' });
    const hidden = await failure(carol.getAgent(inB.id));
    expect([hidden.status, hidden.code]).toEqual([404, 'not_found']);
    expect((await admin.getAgent(inB.id)).id).toBe(inB.id);
  });

  it('pages through 7 agents 3 at a time without duplicates or gaps, and rejects a bad cursor', async () => {
    const p = (await alice.registerProject({ name: 'agents-paging' })).project.id;
    await alice.createTemplate({ name: 'worker', projectId: p, harness: 'command' });
    const created: string[] = [];
    for (let i = 0; i < 7; i++) created.push((await alice.createAgent({ projectId: p, name: `page-${i}`, template: 'worker' })).id);
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await alice.listAgents({ projectId: p, limit: 3, ...(cursor ? { cursor } : {}) });
      sizes.push(page.items.length);
      seen.push(...page.items.map((a) => a.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(sizes).toEqual([3, 3, 1]);
    expect(seen).toEqual([...created].sort());
    const bad = await failure(alice.listAgents({ projectId: p, cursor: 'not-a-cursor' }));
    expect([bad.status, bad.code]).toEqual([400, 'validation_error']);
    const tooBig = await failure(alice.listAgents({ projectId: p, limit: 501 }));
    expect([tooBig.status, tooBig.code]).toEqual([400, 'validation_error']);
  });

  it('merges the agents of all of a member\'s projects in id order across pages, and nothing else', async () => {
    const anon = new GraftClient({ baseUrl: fx.hub.url });
    const dave = anon.withToken((await anon.devLogin('dave@agents.test')).token);
    const mine = [(await dave.registerProject({ name: 'dave-one' })).project.id, (await dave.registerProject({ name: 'dave-two' })).project.id];
    const notMine = (await admin.registerProject({ name: 'not-daves' })).project.id;
    for (const p of [...mine, notMine]) await admin.createTemplate({ name: 'worker', projectId: p, harness: 'command' });
    const expected: string[] = [];
    for (let i = 0; i < 5; i++) {
      // Interleaved creation, so both projects contribute to every page.
      for (const p of mine) expected.push((await dave.createAgent({ projectId: p, name: `merge-${i}`, template: 'worker' })).id);
      await admin.createAgent({ projectId: notMine, name: `other-${i}`, template: 'worker' });
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await dave.listAgents({ limit: 3, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items.map((a) => a.id));
      cursor = page.nextCursor ?? undefined;
      pages++;
    } while (cursor && pages < 10);
    expect(seen).toEqual([...expected].sort());
    expect(pages).toBe(4);
    const running = await dave.listAgents({ phase: 'running' });
    expect(running.items).toEqual([]);
  });

  it('filters by projectId, userId, phase and brokerId', async () => {
    const p = (await alice.registerProject({ name: 'agents-filter' })).project.id;
    await alice.putMember(p, bobId, 'member');
    await alice.createTemplate({ name: 'worker', projectId: p, harness: 'command' });
    const a1 = await alice.createAgent({ projectId: p, name: 'f-alice-1', template: 'worker' });
    const a2 = await alice.createAgent({ projectId: p, name: 'f-alice-2', template: 'worker' });
    const b1 = await bob.createAgent({ projectId: p, name: 'f-bob-1', template: 'worker' });
    const ids = (items: Agent[]) => items.map((a) => a.id);

    expect(ids((await alice.listAgents({ projectId: p })).items)).toEqual([a1.id, a2.id, b1.id]);
    expect(ids((await alice.listAgents({ projectId: p, userId: bobId })).items)).toEqual([b1.id]);
    expect(ids((await alice.listAgents({ projectId: p, userId: aliceId })).items)).toEqual([a1.id, a2.id]);

    const self = await alice.withToken((await alice.mintAgentToken(a2.id)).token);
    await self.reportStatus(a2.id, { phase: 'provisioning' });
    expect(ids((await alice.listAgents({ projectId: p, phase: 'provisioning' })).items)).toEqual([a2.id]);
    expect(ids((await alice.listAgents({ projectId: p, phase: 'created' })).items)).toEqual([a1.id, b1.id]);

    // No broker has taken any agent yet, so any broker filter matches nothing.
    expect((await alice.listAgents({ projectId: p, brokerId: randomUUID() })).items).toEqual([]);

    // Without projectId a user sees agents of all their projects and nothing else.
    const bobAll = (await bob.listAgents({ limit: 500 })).items;
    expect(ids(bobAll)).toEqual(expect.arrayContaining([a1.id, b1.id]));
    expect(bobAll.every((a) => [projectA, projectB, p].includes(a.projectId))).toBe(true);
    const carolAll = (await carol.listAgents({ limit: 500 })).items;
    expect(carolAll.every((a) => a.projectId === projectA)).toBe(true);
    expect(ids(carolAll)).not.toContain(a1.id);

    const badPhase = await failure(alice.listAgents({ projectId: p, phase: 'flying' as Agent['phase'] }));
    expect([badPhase.status, badPhase.code]).toEqual([400, 'validation_error']);
  });
});

describe('agent lifecycle and state machine', () => {
  it('walks created → provisioning → starting → running, then suspend, start, restart, stop and start again', async () => {
    const agent = await newAgent();
    const self = await asAgent(agent.id);
    let s: AgentStatusResponse = await self.reportStatus(agent.id, { phase: 'provisioning' });
    expect(s).toEqual({ phase: 'provisioning', activity: null, detail: null, generation: 1, desiredState: 'running', ignored: [] });
    s = await self.reportStatus(agent.id, { phase: 'starting', detail: 'pulling image' });
    expect([s.phase, s.detail]).toEqual(['starting', 'pulling image']);
    s = await self.reportStatus(agent.id, { phase: 'running' });
    expect([s.phase, s.activity]).toEqual(['running', 'idle']);
    s = await self.reportStatus(agent.id, { activity: 'thinking', detail: 'planning' });
    expect([s.phase, s.activity, s.detail]).toEqual(['running', 'thinking', 'planning']);
    s = await self.reportStatus(agent.id, { activity: 'executing', detail: 'Bash' });
    expect([s.activity, s.detail]).toEqual(['executing', 'Bash']);

    let a = await alice.agentAction(agent.id, 'suspend');
    expect([a.desiredState, a.generation, a.phase]).toEqual(['suspended', 2, 'running']);
    const again = await failure(alice.agentAction(agent.id, 'suspend'));
    expect([again.status, again.code]).toEqual([409, 'invalid_transition']);
    expect(again.details).toMatchObject({ phase: 'running', desiredState: 'suspended', action: 'suspend' });

    s = await self.reportStatus(agent.id, { phase: 'suspended' });
    expect(s).toMatchObject({ phase: 'suspended', activity: null, desiredState: 'suspended', generation: 2 });

    a = await alice.agentAction(agent.id, 'start');
    expect([a.desiredState, a.generation, a.phase]).toEqual(['running', 3, 'suspended']);
    s = await self.reportStatus(agent.id, { phase: 'starting' });
    s = await self.reportStatus(agent.id, { phase: 'running', activity: 'working' });
    expect([s.phase, s.activity, s.generation]).toEqual(['running', 'working', 3]);
    const startRunning = await failure(alice.agentAction(agent.id, 'start'));
    expect([startRunning.status, startRunning.code]).toEqual([409, 'invalid_transition']);

    a = await alice.agentAction(agent.id, 'restart');
    expect([a.desiredState, a.generation]).toEqual(['running', 4]);

    // No broker owns this agent, so the hub observes the stop itself.
    a = await alice.agentAction(agent.id, 'stop');
    expect([a.desiredState, a.generation, a.phase, a.activity]).toEqual(['stopped', 5, 'stopped', null]);
    const stopAgain = await failure(alice.agentAction(agent.id, 'stop'));
    expect([stopAgain.status, stopAgain.code]).toEqual([409, 'invalid_transition']);
    expect(stopAgain.details).toMatchObject({ phase: 'stopped' });

    a = await alice.agentAction(agent.id, 'start');
    expect([a.desiredState, a.generation, a.phase]).toEqual(['running', 6, 'stopped']);
  });

  it('refuses illegal phase jumps with 409 invalid_transition naming the current phase', async () => {
    const agent = await newAgent();
    const self = await asAgent(agent.id);
    const skip = await failure(self.reportStatus(agent.id, { phase: 'running' }));
    expect([skip.status, skip.code]).toEqual([409, 'invalid_transition']);
    expect(skip.details).toMatchObject({ phase: 'created' });
    await self.reportStatus(agent.id, { phase: 'provisioning' });
    const jump = await failure(self.reportStatus(agent.id, { phase: 'running' }));
    expect([jump.status, jump.code]).toEqual([409, 'invalid_transition']);
    expect(jump.details).toMatchObject({ phase: 'provisioning' });
    expect((await alice.getAgent(agent.id)).phase).toBe('provisioning');
  });

  it('refuses activity while not running (409) and platform-only activities from an agent (403)', async () => {
    const agent = await newAgent();
    const self = await asAgent(agent.id);
    await self.reportStatus(agent.id, { phase: 'provisioning' });
    const early = await failure(self.reportStatus(agent.id, { activity: 'working' }));
    expect([early.status, early.code]).toEqual([409, 'invalid_transition']);
    expect(early.details).toMatchObject({ phase: 'provisioning' });

    const { agent: running, self: runner } = await runningAgent();
    for (const activity of ['stalled', 'offline'] as const) {
      const e = await failure(runner.reportStatus(running.id, { activity }));
      expect([e.status, e.code], activity).toEqual([403, 'forbidden']);
    }
    expect((await alice.getAgent(running.id)).activity).toBe('idle');
  });

  it('keeps a sticky activity against hook reports but lets the agent itself overwrite it', async () => {
    const { agent, self } = await runningAgent();
    let s = await self.reportStatus(agent.id, { activity: 'waiting_for_input', detail: 'which branch?' });
    expect([s.activity, s.ignored]).toEqual(['waiting_for_input', []]);
    s = await self.reportStatus(agent.id, { activity: 'working', detail: 'Edit', source: 'hook' });
    expect(s).toMatchObject({ activity: 'waiting_for_input', detail: 'which branch?' });
    expect(s.ignored).toContain('activity');
    const after = await alice.getAgent(agent.id);
    expect([after.activity, after.detail]).toEqual(['waiting_for_input', 'which branch?']);
    s = await self.reportStatus(agent.id, { activity: 'working', detail: 'Edit', source: 'agent' });
    expect(s).toMatchObject({ activity: 'working', detail: 'Edit', ignored: [] });
    expect((await alice.getAgent(agent.id)).activity).toBe('working');
  });

  it('updates lastSeenAt on every status report', async () => {
    const agent = await newAgent();
    expect(agent.lastSeenAt).toBeNull();
    const self = await asAgent(agent.id);
    await self.reportStatus(agent.id, { phase: 'provisioning' });
    const first = (await alice.getAgent(agent.id)).lastSeenAt;
    expect(first).toMatch(ISO_RE);
    await new Promise((r) => setTimeout(r, 10));
    await self.reportStatus(agent.id, { detail: 'still here' });
    const second = (await alice.getAgent(agent.id)).lastSeenAt;
    expect(Date.parse(second ?? '')).toBeGreaterThan(Date.parse(first ?? ''));
  });

  it('records a heartbeat as lastSeenAt and answers the agent its own state', async () => {
    const { agent, self } = await runningAgent();
    const before = (await alice.getAgent(agent.id)).lastSeenAt;
    await new Promise((r) => setTimeout(r, 10));
    const r = await call('POST', `/api/v1/agents/${agent.id}/heartbeat`, (await alice.mintAgentToken(agent.id)).token);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ phase: 'running', activity: 'idle', desiredState: 'running', generation: 1 });
    const after = await alice.getAgent(agent.id);
    expect(Date.parse(after.lastSeenAt ?? '')).toBeGreaterThan(Date.parse(before ?? ''));
    // A heartbeat is liveness only: it changes neither activity nor detail.
    expect([after.activity, after.detail, after.phase]).toEqual(['idle', null, 'running']);
    expect(await self.agentHeartbeat(agent.id)).toEqual({ phase: 'running', activity: 'idle', desiredState: 'running', generation: 1 });
  });

  it('accepts heartbeats only from the agent itself', async () => {
    const a = await newAgent();
    const b = await newAgent();
    const selfA = await asAgent(a.id);
    const user = await failure(alice.agentHeartbeat(a.id));
    expect([user.status, user.code]).toEqual([403, 'forbidden']);
    const other = await failure(selfA.agentHeartbeat(b.id));
    expect([other.status, other.code]).toEqual([403, 'forbidden']);
    expect((await alice.getAgent(b.id)).lastSeenAt).toBeNull();
    expect((await selfA.agentHeartbeat(a.id)).phase).toBe('created');
    expect((await alice.getAgent(a.id)).lastSeenAt).toMatch(ISO_RE);
  });

  it('accepts status only from the agent itself', async () => {
    const a = await newAgent();
    const b = await newAgent();
    const selfA = await asAgent(a.id);
    const user = await failure(alice.reportStatus(a.id, { phase: 'provisioning' }));
    expect([user.status, user.code]).toEqual([403, 'forbidden']);
    const admins = await failure(admin.reportStatus(a.id, { phase: 'provisioning' }));
    expect([admins.status, admins.code]).toEqual([403, 'forbidden']);
    const other = await failure(selfA.reportStatus(b.id, { phase: 'provisioning' }));
    expect([other.status, other.code]).toEqual([403, 'forbidden']);
    expect((await alice.getAgent(b.id)).phase).toBe('created');
  });

  it('limits agent tokens to their own agent', async () => {
    const a = await newAgent();
    const b = await newAgent();
    const selfA = await asAgent(a.id);
    expect((await selfA.getAgent(a.id)).id).toBe(a.id);
    expect(await selfA.me()).toEqual({ kind: 'agent', agentId: a.id, projectId: projectA });
    const peek = await failure(selfA.getAgent(b.id));
    expect([peek.status, peek.code]).toEqual([403, 'forbidden']);
    const lifecycle = await failure(selfA.agentAction(a.id, 'stop'));
    expect([lifecycle.status, lifecycle.code]).toEqual([403, 'forbidden']);
    const list = await failure(selfA.listAgents());
    expect([list.status, list.code]).toEqual([403, 'forbidden']);
    const mint = await failure(selfA.mintAgentToken(a.id));
    expect([mint.status, mint.code]).toEqual([403, 'forbidden']);
  });

  it('mints agent tokens for project admins only', async () => {
    const a = await newAgent();
    const member = await failure(bob.mintAgentToken(a.id));
    expect([member.status, member.code]).toEqual([403, 'forbidden']);
    const viewer = await failure(carol.mintAgentToken(a.id));
    expect([viewer.status, viewer.code]).toEqual([403, 'forbidden']);
    const tok = await admin.mintAgentToken(a.id);
    expect(tok).toEqual({ token: expect.any(String), expiresAt: expect.stringMatching(ISO_RE), agentId: a.id });
  });

  it('refreshes an agent token into a new one that works; users cannot refresh', async () => {
    const a = await newAgent();
    const b = await newAgent();
    const self = await asAgent(a.id);
    const r = await call('POST', `/api/v1/agents/${a.id}/token/refresh`, (await alice.mintAgentToken(a.id)).token);
    expect(r.status).toBe(201);
    const fresh = r.body as { token: string; agentId: string; expiresAt: string };
    expect(fresh.agentId).toBe(a.id);
    const refreshed = alice.withToken(fresh.token);
    expect((await refreshed.getAgent(a.id)).id).toBe(a.id);
    expect((await refreshed.reportStatus(a.id, { phase: 'provisioning' })).phase).toBe('provisioning');
    const byUser = await failure(alice.refreshAgentToken(a.id));
    expect([byUser.status, byUser.code]).toEqual([403, 'forbidden']);
    const forOther = await failure(self.refreshAgentToken(b.id));
    expect([forOther.status, forOther.code]).toEqual([403, 'forbidden']);
  });

  it('deletes an unplaced agent at once (204); it is then gone, also for its own token', async () => {
    const a = await newAgent();
    const self = await asAgent(a.id);
    const byViewer = await failure(carol.deleteAgent(a.id));
    expect([byViewer.status, byViewer.code]).toEqual([403, 'forbidden']);
    const r = await call('DELETE', `/api/v1/agents/${a.id}`, aliceToken);
    expect(r.status).toBe(204);
    expect(r.body).toBeUndefined();
    const gone = await failure(alice.getAgent(a.id));
    expect([gone.status, gone.code]).toEqual([404, 'not_found']);
    const status = await failure(self.reportStatus(a.id, { phase: 'provisioning' }));
    expect([status.status, status.code]).toEqual([404, 'not_found']);
    const twice = await call('DELETE', `/api/v1/agents/${a.id}`, aliceToken);
    expect(twice.status).toBe(404);
    expect((twice.body as ErrorBody).error.code).toBe('not_found');
  });

  it('accepts 20 concurrent status reports on one agent and ends in one of the reported states', async () => {
    const { agent, self } = await runningAgent();
    const activities = ['working', 'thinking', 'executing', 'idle'] as const;
    const reports = Array.from({ length: 20 }, (_, i) => ({ activity: activities[i % activities.length], detail: `step-${i}` }));
    const answers = await Promise.allSettled(reports.map((r) => self.reportStatus(agent.id, r)));
    const failures = answers.flatMap((a, i) => (a.status === 'rejected' ? [`report ${i}: ${a.reason instanceof GraftApiError ? `${a.reason.status} ${a.reason.code}` : String(a.reason)}`] : []));
    expect(failures).toEqual([]);
    const final = await alice.getAgent(agent.id);
    expect(reports).toContainEqual({ activity: final.activity, detail: final.detail });
    expect(final.phase).toBe('running');
  });
});
