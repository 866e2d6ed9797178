import { GraftClient } from '@graft/client';
import type { Agent } from '@graft/protocol';
import { eventually } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentLog, contiguous, readAgentLog } from './support/agent-log-reader.js';
import { type Cluster, type ClusterBroker, startCluster } from './support/cluster.js';
import { createAgentOnce, FailureTally, listProjectAgents } from './support/resilient-api.js';

// Faults under load on a cluster of real processes (nginx, three hub replicas, Redis, a private
// Postgres that may be restarted, brokers dialing through nginx): the replica holding a broker's
// tunnel SIGKILLed mid-burst, the broker's TCP connection dropped every 2 s, Redis and then Postgres
// restarted. Agents print known text; what the API serves afterwards is compared byte for byte.
/** How long the broker's connection is cut every 2 s. */
const CUT_SECONDS = Number(process.env.GRAFT_E2E_CUT_SECONDS ?? 60);
const BURST = 500;
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({
    postgres: 'private',
    brokers: [
      { name: 'node-burst', maxAgents: BURST + 100 },
      { name: 'node-cut', cuttable: true, maxAgents: 50 },
    ],
  });
}, 120_000);

afterAll(async () => {
  // GRAFT_E2E_CLUSTER_LOGS=<file> keeps every process's log lines of the run, for a failure's post-mortem.
  if (process.env.GRAFT_E2E_CLUSTER_LOGS) cluster?.dumpLogs(process.env.GRAFT_E2E_CLUSTER_LOGS);
  await cluster?.stop();
});

/** Runs `fn` over `items` with at most `concurrency` at once. */
async function pool<T, R>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i] as T, i);
    }),
  );
  return out;
}

async function newProject(name: string): Promise<string> {
  return (await cluster.admin.registerProject({ name })).project.id;
}

/** Waits until every agent of the project is in `phase`; fails with the phases seen. */
async function allInPhase(projectId: string, count: number, phase: Agent['phase'], timeoutMs: number): Promise<Agent[]> {
  const tally = new FailureTally();
  return eventually(
    async () => {
      const agents = await listProjectAgents(cluster.admin, projectId, tally);
      const phases = new Map<string, number>();
      for (const a of agents) phases.set(a.phase, (phases.get(a.phase) ?? 0) + 1);
      expect({ count: agents.length, phases: Object.fromEntries(phases) }).toEqual({ count, phases: { [phase]: count } });
      return agents;
    },
    { timeoutMs, intervalMs: 1_000 },
  );
}

/** Agents listed once each, by name, and exactly the names expected. */
function expectExactlyOnce(agents: readonly Agent[], names: readonly string[]): void {
  const listed = agents.map((a) => a.name).sort();
  const dup = listed.filter((n, i) => i > 0 && listed[i - 1] === n);
  expect(dup, 'agents listed more than once').toEqual([]);
  expect(listed).toEqual([...names].sort());
  expect(new Set(agents.map((a) => a.id)).size).toBe(agents.length);
}

/** How often the broker's supervisor launched each agent (a redelivered create must not launch it again). */
function launches(b: ClusterBroker): Map<string, number> {
  const counts = new Map<string, number>();
  for (const l of b.proc.logs) if (l.event === 'agent.launch' && typeof l.agentId === 'string') counts.set(l.agentId, (counts.get(l.agentId) ?? 0) + 1);
  return counts;
}

function expectLaunchedOnce(b: ClusterBroker, agents: readonly Agent[]): void {
  const counts = launches(b);
  const wrong = agents.filter((a) => counts.get(a.id) !== 1);
  const stories = wrong.slice(0, 2).map((a) => `${a.name} (${a.id}):\n${storyText(a.id)}`);
  // Soft: the logs are compared too, whatever this finds.
  expect.soft(wrong.map((a) => `${a.name}: ${counts.get(a.id) ?? 0}`), `agents not launched exactly once on ${b.name}; the first ones' logs:\n${stories.join('\n')}`).toEqual([]);
}

/** An agent's log lines from every process, one per line, without the fields every line has. */
function storyText(agentId: string): string {
  return cluster
    .agentStory(agentId)
    .map(({ ts, proc, event, level: _level, service: _service, agentId: _agentId, ...rest }) => `  ${String(ts).slice(11)} ${proc} ${event} ${JSON.stringify(rest)}`)
    .join('\n');
}

/** Reads every agent's log to its end (through the balancer) and compares stdout with `expected`. */
async function expectLogs(agents: readonly Agent[], expected: (a: Agent) => string): Promise<void> {
  const logs = await pool(agents, 8, (a) => readAgentLog(cluster.url, cluster.adminToken, a.id, 60_000));
  const wrong: string[] = [];
  logs.forEach((log: AgentLog, i) => {
    const a = agents[i] as Agent;
    const want = expected(a);
    if (log.stdout !== want) wrong.push(`${a.name}: ${describeDiff(log.stdout, want)}${wrong.length === 0 ? `\n${storyText(a.id)}` : ''}`);
    else if (!contiguous(log.seqs)) wrong.push(`${a.name}: sequence numbers ${log.seqs.join(',').slice(0, 200)}`);
  });
  expect(wrong, 'logs that differ from what the agents printed').toEqual([]);
}

/** Where two texts part, in a few words. */
function describeDiff(got: string, want: string): string {
  let i = 0;
  while (i < got.length && i < want.length && got[i] === want[i]) i++;
  return `${got.length} bytes instead of ${want.length}; from byte ${i}: got ${JSON.stringify(got.slice(i, i + 60))}, want ${JSON.stringify(want.slice(i, i + 60))}`;
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `1\n2\n…\n<n>\n`: what `seq 1 <n>` prints. */
const numbers = (n: number) => Array.from({ length: n }, (_, i) => `${i + 1}\n`).join('');

describe('cluster faults', () => {
  it(`SIGKILL of the replica holding the tunnel during ${BURST} dispatches: the broker is back within 10 s, every agent exists once, ends, and logs whole`, async () => {
    const projectId = await newProject('burst');
    await cluster.admin.createTemplate({ name: 'done', projectId, harness: 'command', command: ['sh', '-c', `echo "done-$GRAFT_AGENT_ID"; : ${cluster.marker}`] });
    const broker = cluster.broker('node-burst');
    const owner = await cluster.waitForTunnelOwner(broker);
    const names = Array.from({ length: BURST }, (_, i) => `burst-${String(i + 1).padStart(4, '0')}`);
    const tally = new FailureTally();
    let acknowledged = 0;
    let killedAt = 0;
    let killing: Promise<void> | undefined;
    const outcomes = await pool(names, 8, async (name) => {
      const outcome = await createAgentOnce(cluster.admin, { projectId, name, template: 'done', brokerId: broker.brokerId }, tally);
      if (++acknowledged === 150) {
        killedAt = Date.now();
        killing = owner.kill();
      }
      return outcome;
    });
    await killing;
    expect(killedAt).toBeGreaterThan(0);
    // The broker reconnects through nginx, to another replica, within 10 s of the kill.
    const successor = await cluster.waitForTunnelOwner(broker, { notOn: owner, timeoutMs: Math.max(1, killedAt + 10_000 - Date.now()) });
    const reconnectedAt = Math.min(...broker.proc.logs.filter((l) => l.event === 'tunnel.connected').map((l) => Date.parse(String(l.ts))).filter((t) => t > killedAt));
    console.info(`[cluster-faults] burst: owner hub-${owner.index} killed; tunnel back on hub-${successor.index} after ${reconnectedAt - killedAt} ms; retried failures: ${tally}`);
    expect(reconnectedAt - killedAt).toBeLessThan(10_000);
    await owner.restart();

    const agents = await allInPhase(projectId, BURST, 'stopped', 90_000);
    expectExactlyOnce(agents, names);
    const byId = new Set(agents.map((a) => a.id));
    for (const o of outcomes) if (o.kind === 'created') expect(byId.has(o.agent.id)).toBe(true);
    expectLaunchedOnce(broker, agents);
    await expectLogs(agents, (a) => `done-${a.id}\n`);
  }, 180_000);

  it(`the broker's TCP connection dropped every 2 s for ${CUT_SECONDS} s while agents log: no byte lost or repeated, no agent duplicated`, async () => {
    const projectId = await newProject('cuts');
    const broker = cluster.broker('node-cut');
    const cutter = broker.cutter;
    if (!cutter) throw new Error('node-cut dials through a cutter');
    // Ten numbers every 0.1 s: 100 lines a second per agent, for the whole cutting period and a bit.
    const longRounds = CUT_SECONDS * 10;
    const shortRounds = 50;
    const counter = (rounds: number) => ['sh', '-c', `for j in $(seq 1 ${rounds}); do seq $((j*10-9)) $((j*10)); sleep 0.1; done; : ${cluster.marker}`];
    await cluster.admin.createTemplate({ name: 'counter-long', projectId, harness: 'command', command: counter(longRounds) });
    await cluster.admin.createTemplate({ name: 'counter-short', projectId, harness: 'command', command: counter(shortRounds) });
    const tally = new FailureTally();
    const names: string[] = [];
    const create = async (name: string, template: string) => {
      names.push(name);
      await createAgentOnce(cluster.admin, { projectId, name, template, brokerId: broker.brokerId }, tally);
    };
    for (let i = 1; i <= 4; i++) await create(`long-${i}`, 'counter-long');
    await eventually(async () => expect((await listProjectAgents(cluster.admin, projectId, tally)).every((a) => a.phase === 'running')).toBe(true), { timeoutMs: 20_000, intervalMs: 200 });

    const connectsBefore = broker.proc.logs.filter((l) => l.event === 'tunnel.connected').length;
    const started = Date.now();
    let cutsWithLive = 0;
    let rounds = 0;
    let shortAgents = 0;
    while (Date.now() - started < CUT_SECONDS * 1_000) {
      await new Promise((r) => setTimeout(r, 2_000));
      rounds++;
      if (cutter.cutAll() > 0) cutsWithLive++;
      // New agents are dispatched while the tunnel comes and goes.
      if (rounds % 3 === 0) await create(`short-${++shortAgents}`, 'counter-short');
    }
    const reconnects = broker.proc.logs.filter((l) => l.event === 'tunnel.connected').length - connectsBefore;
    console.info(`[cluster-faults] cuts: ${rounds} rounds, ${cutsWithLive} cut a live connection, ${reconnects} reconnects, ${shortAgents} agents created meanwhile; retried failures: ${tally}`);
    // The cuts hit a live tunnel most of the time: the broker kept reconnecting.
    expect(cutsWithLive).toBeGreaterThanOrEqual(Math.floor(rounds * 0.7));
    expect(reconnects).toBeGreaterThanOrEqual(Math.floor(rounds * 0.7));

    const agents = await allInPhase(projectId, names.length, 'stopped', 60_000);
    expectExactlyOnce(agents, names);
    expectLaunchedOnce(broker, agents);
    await expectLogs(agents, (a) => numbers((a.name.startsWith('long-') ? longRounds : shortRounds) * 10));
  }, (CUT_SECONDS + 120) * 1_000);

  it('Redis restarted, then Postgres, under load: no agent lost, the replicas recover by themselves', async () => {
    const postgres = cluster.postgres;
    if (!postgres) throw new Error('the cluster runs a private Postgres');
    const projectId = await newProject('stores');
    const broker = cluster.broker('node-burst');
    await cluster.admin.createTemplate({ name: 'done', projectId, harness: 'command', command: ['sh', '-c', `echo "done-$GRAFT_AGENT_ID"; : ${cluster.marker}`] });
    await cluster.admin.createTemplate({ name: 'counter', projectId, harness: 'command', command: ['sh', '-c', `for j in $(seq 1 150); do seq $((j*10-9)) $((j*10)); sleep 0.1; done; : ${cluster.marker}`] });
    const tally = new FailureTally();
    const names: string[] = [];
    for (let i = 1; i <= 2; i++) {
      names.push(`counter-${i}`);
      await createAgentOnce(cluster.admin, { projectId, name: `counter-${i}`, template: 'counter', brokerId: broker.brokerId }, tally);
    }
    // A live follower of a logging agent on a replica other than the tunnel's, across both restarts.
    const owner = await cluster.waitForTunnelOwner(broker);
    const reader = cluster.hubs.find((h) => h !== owner && h.alive);
    if (!reader) throw new Error('no second replica');
    const counter1 = (await listProjectAgents(cluster.admin, projectId, tally)).find((a) => a.name === 'counter-1');
    if (!counter1) throw new Error('counter-1 not listed');
    const following = readAgentLog(reader.url, cluster.adminToken, counter1.id, 90_000);

    // Load: a stream of creates through the balancer until told to stop.
    let loading = true;
    let created = 0;
    const load = (async () => {
      while (loading) {
        const name = `load-${String(++created).padStart(4, '0')}`;
        names.push(name);
        await createAgentOnce(cluster.admin, { projectId, name, template: 'done', brokerId: broker.brokerId }, tally, Date.now() + 60_000);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
    await pause(2_000);
    const beforeRedis = created;
    await cluster.redis.restart(2_000);
    await pause(3_000);
    const beforePostgres = created;
    const pgStopped = Date.now();
    await postgres.restart(2_000);
    const pgBack = Date.now();
    await pause(5_000);
    loading = false;
    await load;
    console.info(
      `[cluster-faults] stores: ${created} creates (${beforeRedis} before the Redis restart, ${beforePostgres} before the Postgres restart, down for ${pgBack - pgStopped} ms); retried failures: ${tally}`,
    );

    // The replicas recover by themselves: all still the same processes, ready, and serving writes.
    const exited = cluster.hubs.filter((h) => !running(h.proc.pid)).map((h) => `hub-${h.index} exited; its last output:\n${h.proc.output().slice(-4_000)}`);
    expect(exited, 'replicas that did not survive').toEqual([]);
    await eventually(
      async () => {
        for (const h of cluster.hubs) expect((await fetch(`${h.url}/readyz`)).status).toBe(200);
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    for (const h of cluster.hubs) {
      const name = `after-${h.index}`;
      names.push(name);
      await new GraftClient({ baseUrl: h.url, token: cluster.adminToken, timeoutMs: 10_000 }).createAgent({ projectId, name, template: 'done', brokerId: broker.brokerId });
    }

    const agents = await allInPhase(projectId, names.length, 'stopped', 90_000);
    expectExactlyOnce(agents, names);
    expectLaunchedOnce(broker, agents);
    await expectLogs(agents, (a) => (a.name.startsWith('counter-') ? numbers(1_500) : `done-${a.id}\n`));
    const followed = await following;
    expect(followed.stdout).toBe(numbers(1_500));
    expect(contiguous(followed.seqs)).toBe(true);
  }, 180_000);
});
