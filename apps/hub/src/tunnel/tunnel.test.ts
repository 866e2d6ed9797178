import { GraftClient } from '@graft/client';
import { type Agent, signRequest, TUNNEL_PATH, TunnelCloseCode } from '@graft/protocol';
import { apiRequest, type HubFixture, type JoinedBroker, registerAndJoinBroker, SimBroker, startHubFixture, waitUntil } from '@graft/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';

/** Short heartbeats, so liveness is tested in seconds (the default is 5 s). */
const HEARTBEAT_MS = 300;

let fx: HubFixture;
let admin: GraftClient;
let projectId: string;
let sims: SimBroker[] = [];
let seq = 0;

const uniq = (p: string) => `${p}-${++seq}`;


async function joined(body: { autoProvide?: boolean; projectIds?: string[]; labels?: Record<string, string> } = { autoProvide: true }, maxAgents = 100): Promise<JoinedBroker> {
  return registerAndJoinBroker(fx.hub.url, fx.hub.adminToken, { name: uniq('b'), ...body }, { maxAgents });
}

async function online(b: JoinedBroker, options: Partial<ConstructorParameters<typeof SimBroker>[0]> = {}): Promise<SimBroker> {
  const sim = new SimBroker({ hubUrl: fx.hub.url, brokerId: b.brokerId, secretKey: b.secretKey, ...options });
  sims.push(sim);
  const out = await sim.connect();
  expect(out.ok).toBe(true);
  return sim;
}

async function template(spec: Record<string, unknown> = {}, inProject = projectId): Promise<string> {
  const t = await admin.createTemplate({ name: uniq('t'), projectId: inProject, harness: 'command', command: ['sleep', '60'], ...spec });
  return t.name;
}

const agentIs = (id: string, test: (a: Agent) => boolean) =>
  waitUntil(async () => {
    const a = await admin.getAgent(id);
    return test(a) ? a : undefined;
  });

async function metric(name: string, label: string): Promise<number> {
  const text = await (await fetch(`${fx.hub.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${label}}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'), { env: { GRAFT_BROKER_HEARTBEAT_MS: String(HEARTBEAT_MS) } });
  admin = new GraftClient({ baseUrl: fx.hub.url, token: fx.hub.adminToken });
  projectId = (await admin.registerProject({ name: 'tunnel' })).project.id;
}, 60_000);

afterEach(async () => {
  await Promise.all(sims.map((s) => s.close()));
  sims = [];
  // Each test starts from scratch: no agent wanted running, no broker.
  for (const a of (await admin.listAgents({ limit: 200 })).items) {
    if (a.desiredState === 'running') await admin.agentAction(a.id, 'stop').catch(() => {});
  }
  for (const b of (await admin.listBrokers({ limit: 200 })).items) await apiRequest(fx.hub.url, fx.hub.adminToken, 'DELETE', `/api/v1/brokers/${b.id}`);
});

afterAll(async () => {
  await fx?.stop();
});

describe('tunnel upgrade', () => {
  it('refuses unsigned, tampered, replayed and skewed upgrades with their own codes, and counts them', async () => {
    const b = await joined();
    const url = new URL(TUNNEL_PATH, fx.hub.url);
    const dial = (headers: Record<string, string>) => new SimBroker({ hubUrl: fx.hub.url, brokerId: b.brokerId, secretKey: b.secretKey, headers }).connect();
    const before = await metric('graft_signature_rejections_total', 'reason="replayed_nonce"');

    expect(await dial({})).toEqual({ ok: false, status: 401, code: 'signature_missing' });
    const signed = signRequest({ method: 'GET', path: url.pathname, brokerId: b.brokerId, secret: b.secretKey });
    const sig = signed['X-Graft-Signature'] ?? '';
    const tampered = { ...signed, 'X-Graft-Signature': `${sig.slice(0, -1)}${sig.endsWith('A') ? 'B' : 'A'}` };
    expect(await dial(tampered)).toEqual({ ok: false, status: 401, code: 'signature_invalid' });
    const first = await dial(signed);
    expect(first.ok).toBe(true);
    expect(await dial(signed)).toEqual({ ok: false, status: 401, code: 'replayed_request' });
    const old = signRequest({ method: 'GET', path: url.pathname, brokerId: b.brokerId, secret: b.secretKey, nowSecs: Math.floor(Date.now() / 1000) - 600 });
    expect(await dial(old)).toEqual({ ok: false, status: 401, code: 'clock_skew' });
    // A signature made for another path does not open the tunnel.
    const other = signRequest({ method: 'GET', path: '/api/v1/brokers/self', brokerId: b.brokerId, secret: b.secretKey });
    expect(await dial(other)).toEqual({ ok: false, status: 401, code: 'signature_invalid' });
    expect(await metric('graft_signature_rejections_total', 'reason="replayed_nonce"')).toBe(before + 1);
    expect(await metric('graft_signature_rejections_total', 'reason="bad_signature"')).toBeGreaterThanOrEqual(2);
  });

  it('welcomes a broker, shows it online with what its hello said, and closes on a malformed frame with 4002', async () => {
    const b = await joined();
    const sim = await online(b);
    expect(sim.welcomes[0]?.heartbeatIntervalMs).toBe(HEARTBEAT_MS);
    expect(sim.welcomes[0]?.desired).toEqual([]);
    const shown = await admin.getBroker(b.brokerId);
    expect(shown).toMatchObject({ status: 'online', hostname: 'sim', version: 'sim', runtimes: ['process'] });
    sim.sendRaw('{"v":1,"type":"status","agent":{"agentId":"nope"}}');
    await sim.waitFor(() => sim.closes.length > 0);
    expect(sim.closes).toEqual([TunnelCloseCode.protocolError]);
  });
});

describe('placement and dispatch', () => {
  it('says why an agent waits, and places it as soon as a broker fits', async () => {
    const t = await template();
    const a = await admin.createAgent({ projectId, name: uniq('a'), template: t });
    expect(a).toMatchObject({ phase: 'created', brokerId: null, pendingReason: 'no_broker' });

    const linked = await joined({ projectIds: [] });
    const sim = await online(linked);
    // Connected, but not allowed for this project.
    const b = await admin.createAgent({ projectId, name: uniq('a'), template: t });
    expect(b.pendingReason).toBe('not_allowed');
    // Linking the project places both waiting agents, and the broker's reports bring them to running.
    expect((await apiRequest(fx.hub.url, fx.hub.adminToken, 'PUT', `/api/v1/projects/${projectId}/brokers/${linked.brokerId}`)).status).toBe(204);
    for (const id of [a.id, b.id]) {
      const running = await agentIs(id, (x) => x.phase === 'running');
      expect(running).toMatchObject({ brokerId: linked.brokerId, pendingReason: null, activity: 'idle' });
    }
    const created = sim.commands.filter((c) => c.command === 'create').map((c) => c.agent.agentId);
    expect(created.sort()).toEqual([a.id, b.id].sort());
    const spec = sim.commands[0]?.agent.spec;
    expect(spec?.command).toEqual(['sleep', '60']);
    expect(spec?.env.GRAFT_AGENT_ID).toBe(sim.commands[0]?.agent.agentId);
    expect(spec?.env.GRAFT_HUB_URL).toBe(fx.hub.url);
    // The agent token in the spec is a real agent JWT for that agent.
    const me = await new GraftClient({ baseUrl: fx.hub.url, token: spec?.env.GRAFT_AGENT_TOKEN ?? '' }).me();
    expect(me).toMatchObject({ kind: 'agent', agentId: sim.commands[0]?.agent.agentId });
  });

  it("injects the project's secrets into the agent's environment, only towards its broker", async () => {
    const secret = `s3cr3t-${Date.now()}`;
    const own = (await admin.registerProject({ name: uniq('secrets') })).project.id;
    await admin.putSecret(own, 'DEPLOY_TOKEN', secret);
    const b = await joined();
    const sim = await online(b);
    const t = await admin.createTemplate({ name: uniq('t'), projectId: own, harness: 'command', command: ['true'], env: { MODE: 'test' } });
    const a = await admin.createAgent({ projectId: own, name: uniq('a'), template: t.name, env: { MODE: 'agent' } });
    await sim.waitFor(() => sim.commands.some((c) => c.agent.agentId === a.id));
    const env = sim.commands.find((c) => c.agent.agentId === a.id)?.agent.spec.env;
    expect(env).toMatchObject({ DEPLOY_TOKEN: secret, MODE: 'agent', GRAFT_AGENT_ID: a.id });
    // And in the desired set of a reconnect.
    const again = await online(b, { inventory: [] });
    expect(again.welcomes[0]?.desired.find((d) => d.agentId === a.id)?.spec.env.DEPLOY_TOKEN).toBe(secret);
    // Never in what the API says about the agent, nor in the hub's logs.
    expect(JSON.stringify(await admin.getAgent(a.id))).not.toContain(secret);
    expect(JSON.stringify(await admin.listAgents({ projectId: own }))).not.toContain(secret);
    expect(fx.hub.output()).not.toContain(secret);
  });

  it('names runtime, labels, draining and capacity as reasons, and honours an explicit brokerId', async () => {
    const b = await joined({ autoProvide: true, labels: { gpu: 'a100' } }, 1);
    // The hello's capacity is what counts (it may differ from the join's).
    const sim = await online(b, { maxAgents: 1 });
    const docker = await admin.createAgent({ projectId, name: uniq('a'), template: await template({ requirements: { runtime: 'docker' } }) });
    expect(docker.pendingReason).toBe('no_runtime');
    const tpu = await admin.createAgent({ projectId, name: uniq('a'), template: await template({ requirements: { labels: { gpu: 'tpu' } } }) });
    expect(tpu.pendingReason).toBe('no_labels');
    const gpu = await admin.createAgent({ projectId, name: uniq('a'), template: await template({ requirements: { labels: { gpu: 'a100' } } }) });
    expect(gpu.brokerId).toBe(b.brokerId);
    await agentIs(gpu.id, (x) => x.phase === 'running');
    const t = await template();
    const full = await admin.createAgent({ projectId, name: uniq('a'), template: t });
    expect(full.pendingReason).toBe('no_capacity');
    // Freeing the slot places the waiting agent.
    await admin.agentAction(gpu.id, 'stop');
    await agentIs(full.id, (x) => x.brokerId === b.brokerId && x.phase === 'running');
    await apiRequest(fx.hub.url, fx.hub.adminToken, 'POST', `/api/v1/brokers/${b.brokerId}/drain`);
    const drained = await admin.createAgent({ projectId, name: uniq('a'), template: t });
    expect(drained.pendingReason).toBe('draining');
    // An explicit brokerId waits for that broker only, even when another one is free.
    const other = await joined();
    await online(other);
    const pinned = await admin.createAgent({ projectId, name: uniq('a'), template: t, brokerId: b.brokerId });
    expect(pinned).toMatchObject({ brokerId: null, pendingReason: 'draining' });
    expect(sim.commands.filter((c) => c.agent.agentId === pinned.id)).toEqual([]);
  });

  it('matches runtime, network and limits against what each runtime can enforce, naming the missing piece', async () => {
    // A project of its own, reached only by the brokers linked to it here.
    const isolatedProject = (await admin.registerProject({ name: uniq('runtimes') })).project.id;
    const join = (runtimes: Array<'process' | 'bwrap' | 'docker'>) =>
      registerAndJoinBroker(fx.hub.url, fx.hub.adminToken, { name: uniq('b'), projectIds: [isolatedProject] }, { maxAgents: 10, runtimes });
    const create = async (spec: Record<string, unknown>) => admin.createAgent({ projectId: isolatedProject, name: uniq('a'), template: await template(spec, isolatedProject) });
    const plain = await join(['process']);
    const plainSim = await online(plain, { runtimes: ['process'] });
    // Only a process runtime: it cannot cut the network, nor apply limits; an image means docker.
    expect((await create({ network: false })).pendingReason).toBe('no_isolation');
    expect((await create({ requirements: { network: false } })).pendingReason).toBe('no_isolation');
    expect((await create({ resources: { memoryMb: 256 } })).pendingReason).toBe('no_limits');
    expect((await create({ image: 'localhost/agent:1' })).pendingReason).toBe('no_runtime');
    expect((await create({ runtime: 'bwrap' })).pendingReason).toBe('no_runtime');
    const anywhere = await create({});
    expect(anywhere).toMatchObject({ brokerId: plain.brokerId });
    // A bwrap broker takes the network-less agents (placement retries waiting agents when a broker connects).
    const sandbox = await join(['process', 'bwrap']);
    const sandboxSim = await online(sandbox, { runtimes: ['process', 'bwrap'] });
    const isolated = await create({ network: false });
    expect(isolated.brokerId).toBe(sandbox.brokerId);
    await sandboxSim.waitFor(() => sandboxSim.commands.some((c) => c.agent.agentId === isolated.id));
    const sent = sandboxSim.commands.find((c) => c.agent.agentId === isolated.id);
    expect(sent?.agent.spec).toMatchObject({ runtime: 'bwrap', network: false, resources: {} });
    // Limits still need docker.
    expect((await create({ network: false, resources: { cpus: 1 } })).pendingReason).toBe('no_limits');
    const docker = await join(['docker']);
    const dockerSim = await online(docker, { runtimes: ['docker'] });
    const limited = await create({ image: 'localhost/agent:1', resources: { cpus: 1, memoryMb: 128 } });
    expect(limited.brokerId).toBe(docker.brokerId);
    await dockerSim.waitFor(() => dockerSim.commands.some((c) => c.agent.agentId === limited.id));
    expect(dockerSim.commands.find((c) => c.agent.agentId === limited.id)?.agent.spec).toMatchObject({ runtime: 'docker', image: 'localhost/agent:1', resources: { cpus: 1, memoryMb: 128 }, network: true });
    expect(plainSim.commands.map((c) => c.agent.agentId)).toEqual([anywhere.id]);
  });

  it('refuses a template whose runtime or network is given twice with different values', async () => {
    const res = await apiRequest(fx.hub.url, fx.hub.adminToken, 'POST', '/api/v1/templates', {
      name: uniq('t'),
      projectId,
      harness: 'command',
      command: ['true'],
      runtime: 'docker',
      requirements: { runtime: 'bwrap' },
    });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ error: { code: 'validation_error' } });
  });

  it('spreads agents over the least loaded brokers', async () => {
    const sims2 = await Promise.all([joined(undefined, 10), joined(undefined, 10)].map(async (p) => online(await p)));
    const t = await template();
    for (let i = 0; i < 6; i++) await admin.createAgent({ projectId, name: uniq('a'), template: t });
    await Promise.all(sims2.map((s) => s.waitFor(() => s.commands.length >= 3)));
    expect(sims2.map((s) => s.commands.length)).toEqual([3, 3]);
  });

  it('sends lifecycle commands with the whole desired state and a new generation; delete ends with the row gone', async () => {
    const b = await joined();
    const sim = await online(b);
    const a = await admin.createAgent({ projectId, name: uniq('a'), template: await template() });
    await agentIs(a.id, (x) => x.phase === 'running');
    await admin.agentAction(a.id, 'suspend');
    await agentIs(a.id, (x) => x.phase === 'suspended');
    await admin.agentAction(a.id, 'start');
    await agentIs(a.id, (x) => x.phase === 'running');
    await admin.agentAction(a.id, 'restart');
    await sim.waitFor(() => sim.commands.length >= 4);
    expect(sim.commands.map((c) => [c.command, c.agent.generation, c.agent.desiredState, c.agent.resume])).toEqual([
      ['create', 1, 'running', false],
      ['suspend', 2, 'suspended', false],
      ['start', 3, 'running', true],
      ['start', 4, 'running', false],
    ]);
    const del = await apiRequest(fx.hub.url, fx.hub.adminToken, 'DELETE', `/api/v1/agents/${a.id}`);
    expect(del.status).toBe(202);
    await waitUntil(async () => (await apiRequest(fx.hub.url, fx.hub.adminToken, 'GET', `/api/v1/agents/${a.id}`)).status === 404);
    expect(sim.commands.at(-1)).toMatchObject({ command: 'delete', agent: { desiredState: 'deleted', generation: 5 } });
  });

  it('drops a report of an older generation, and refuses a broker reporting on an agent it does not hold', async () => {
    const b = await joined();
    const sim = await online(b, { mode: 'ack' });
    const a = await admin.createAgent({ projectId, name: uniq('a'), template: await template() });
    await sim.waitFor(() => sim.commands.length === 1);
    sim.status(a.id, 1, 'provisioning');
    sim.status(a.id, 1, 'starting');
    sim.status(a.id, 1, 'running');
    await agentIs(a.id, (x) => x.phase === 'running');
    await admin.agentAction(a.id, 'stop');
    await sim.waitFor(() => sim.commands.length === 2);
    // A late report of generation 1 (the process crashed before the stop arrived) is stale now.
    sim.status(a.id, 1, 'error', 'exit code 1', 1);
    sim.status(a.id, 2, 'stopping');
    sim.status(a.id, 2, 'stopped');
    const stopped = await agentIs(a.id, (x) => x.phase === 'stopped');
    expect(stopped.detail).toBeNull();
    // Another broker cannot move this agent.
    const intruder = await online(await joined());
    intruder.status(a.id, 2, 'running');
    await new Promise((r) => setTimeout(r, 300));
    expect((await admin.getAgent(a.id)).phase).toBe('stopped');
  });

  it('unplaces an agent the broker refuses for capacity, with that reason', async () => {
    const b = await joined();
    await online(b, { refuseWith: 'no_capacity' });
    const a = await admin.createAgent({ projectId, name: uniq('a'), template: await template() });
    expect(a.brokerId).toBe(b.brokerId);
    await agentIs(a.id, (x) => x.brokerId === null && x.pendingReason === 'no_capacity').catch(async (err) => {
      throw new Error(`${err}: ${JSON.stringify(await admin.getAgent(a.id))}`);
    });
  });
});

describe('liveness and reconnection', () => {
  it('marks running agents offline when the broker drops, and restores them from the inventory on reconnect', async () => {
    const b = await joined();
    const sim = await online(b);
    const a = await admin.createAgent({ projectId, name: uniq('a'), template: await template() });
    await agentIs(a.id, (x) => x.phase === 'running');
    const token = sim.commands.find((c) => c.agent.agentId === a.id)?.agent.spec.env.GRAFT_AGENT_TOKEN ?? '';
    await new GraftClient({ baseUrl: fx.hub.url, token }).reportStatus(a.id, { activity: 'thinking' });
    const dropped = Date.now();
    sim.kill();
    await agentIs(a.id, (x) => x.activity === 'offline');
    // About one heartbeat interval after the connection drops, well inside 3 missed heartbeats.
    expect(Date.now() - dropped).toBeLessThan(HEARTBEAT_MS * 3 + 1_500);
    expect((await admin.getBroker(b.brokerId)).status).toBe('offline');
    const back = await online(b, { inventory: [{ agentId: a.id, generation: 1, phase: 'running', detail: null, exitCode: null }] });
    expect(back.welcomes[0]?.desired.map((d) => [d.agentId, d.generation, d.desiredState])).toEqual([[a.id, 1, 'running']]);
    const restored = await agentIs(a.id, (x) => x.activity !== 'offline');
    expect(restored).toMatchObject({ phase: 'running', activity: 'thinking' });
    expect((await admin.getBroker(b.brokerId)).status).toBe('online');
  });

  it('an inventory showing that an agent exited while the broker was away is applied', async () => {
    const b = await joined();
    const sim = await online(b);
    const a = await admin.createAgent({ projectId, name: uniq('a'), template: await template() });
    await agentIs(a.id, (x) => x.phase === 'running');
    sim.kill();
    await online(b, { inventory: [{ agentId: a.id, generation: 1, phase: 'error', detail: 'exit code 2', exitCode: 2 }] });
    const failed = await agentIs(a.id, (x) => x.phase === 'error');
    expect(failed.detail).toBe('exit code 2');
  });

  it('an inventory that skips phases whose reports were lost (a hub died before writing them) is applied', async () => {
    const b = await joined();
    const sim = await online(b, { mode: 'ack' });
    const a = await admin.createAgent({ projectId, name: uniq('a'), template: await template() });
    await sim.waitFor(() => sim.commands.some((c) => c.agent.agentId === a.id));
    expect((await admin.getAgent(a.id)).phase).toBe('created');
    sim.kill();
    // The broker started it meanwhile: its hello says running, without the provisioning and starting reports.
    await online(b, { inventory: [{ agentId: a.id, generation: 1, phase: 'running', detail: null, exitCode: null }] });
    expect(await agentIs(a.id, (x) => x.phase === 'running')).toMatchObject({ activity: 'idle' });
  });

  it('a newer connection replaces the old one, whose late cleanup does not mark the broker or its agents offline', async () => {
    const b = await joined();
    const first = await online(b);
    const a = await admin.createAgent({ projectId, name: uniq('a'), template: await template() });
    await agentIs(a.id, (x) => x.phase === 'running');
    const second = await online(b, { inventory: [{ agentId: a.id, generation: 1, phase: 'running', detail: null, exitCode: null }] });
    await first.waitFor(() => first.closes.length > 0);
    expect(first.closes).toEqual([TunnelCloseCode.superseded]);
    // Several heartbeat intervals later the broker is still online and the agent never went offline.
    await new Promise((r) => setTimeout(r, HEARTBEAT_MS * 5));
    expect((await admin.getBroker(b.brokerId)).status).toBe('online');
    expect((await admin.getAgent(a.id)).activity).toBe('idle');
    // Commands go to the new connection.
    await admin.agentAction(a.id, 'stop');
    await second.waitFor(() => second.commands.some((c) => c.command === 'stop'));
    expect(first.commands.some((c) => c.command === 'stop')).toBe(false);
  });

  it('a broker that stops heartbeating is closed with 4004 and shown offline', async () => {
    const b = await joined();
    const sim = await online(b);
    sim.silence();
    await sim.waitFor(() => sim.closes.length > 0, 10_000);
    expect(sim.closes).toEqual([TunnelCloseCode.heartbeatTimeout]);
    await waitUntil(async () => (await admin.getBroker(b.brokerId)).status === 'offline');
  });

  it('deleting a broker closes its tunnel with 4001 and moves its agents wanted running to another broker', async () => {
    const b = await joined();
    const sim = await online(b);
    const a = await admin.createAgent({ projectId, name: uniq('a'), template: await template() });
    await agentIs(a.id, (x) => x.phase === 'running');
    expect((await apiRequest(fx.hub.url, fx.hub.adminToken, 'DELETE', `/api/v1/brokers/${b.brokerId}`)).status).toBe(204);
    await sim.waitFor(() => sim.closes.length > 0);
    expect(sim.closes).toEqual([TunnelCloseCode.revoked]);
    const orphan = await admin.getAgent(a.id);
    expect(orphan).toMatchObject({ brokerId: null, phase: 'error', pendingReason: 'no_broker' });
    const other = await joined();
    await online(other);
    await agentIs(a.id, (x) => x.brokerId === other.brokerId && x.phase === 'running');
  });

});

describe('messages', () => {
  it('are stored, delivered in order to a running agent, wait while it is suspended, and wake resumes it first', async () => {
    const b = await joined();
    const sim = await online(b);
    const a = await admin.createAgent({ projectId, name: uniq('a'), template: await template() });
    await agentIs(a.id, (x) => x.phase === 'running');
    const first = await admin.sendMessage(a.id, { body: 'one' });
    expect(first).toMatchObject({ agentId: a.id, body: 'one', wake: false });
    await admin.sendMessage(a.id, { body: 'two' });
    await sim.waitFor(() => sim.commands.filter((c) => c.command === 'message').length === 2);
    expect(sim.commands.filter((c) => c.command === 'message').map((c) => c.message)).toEqual(['one', 'two']);
    await waitUntil(async () => (await admin.listMessages(a.id)).items.every((m) => m.state === 'delivered'));

    await admin.agentAction(a.id, 'suspend');
    await agentIs(a.id, (x) => x.phase === 'suspended');
    const parked = await admin.sendMessage(a.id, { body: 'three' });
    await new Promise((r) => setTimeout(r, 300));
    expect((await admin.listMessages(a.id)).items.find((m) => m.id === parked.id)?.state).toBe('pending');
    expect(sim.commands.filter((c) => c.command === 'message')).toHaveLength(2);
    await admin.sendMessage(a.id, { body: 'four', wake: true });
    // Resumed (start of a suspended agent resumes), then both waiting messages arrive in order.
    await sim.waitFor(() => sim.commands.filter((c) => c.command === 'message').length === 4);
    const start = sim.commands.find((c) => c.command === 'start');
    expect(start?.agent).toMatchObject({ desiredState: 'running', resume: true });
    expect(sim.commands.filter((c) => c.command === 'message').map((c) => c.message)).toEqual(['one', 'two', 'three', 'four']);
  });

  it('wait for a broker that is away and go out when it is back', async () => {
    const b = await joined();
    const sim = await online(b);
    const a = await admin.createAgent({ projectId, name: uniq('a'), template: await template() });
    await agentIs(a.id, (x) => x.phase === 'running');
    sim.kill();
    const m = await admin.sendMessage(a.id, { body: 'while you were out' });
    expect(m.state).toBe('pending');
    const back = await online(b, { inventory: [{ agentId: a.id, generation: 1, phase: 'running', detail: null, exitCode: null }] });
    await back.waitFor(() => back.commands.some((c) => c.command === 'message' && c.message === 'while you were out'));
    await waitUntil(async () => (await admin.listMessages(a.id)).items[0]?.state === 'delivered');
  });
});