import { GraftClient } from '@graft/client';
import type { Agent } from '@graft/protocol';
import { eventually } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { WebSocket } from 'ws';
import { contiguous, readAgentLog } from './support/agent-log-reader.js';
import { type Cluster, type ClusterBroker, type ClusterHub, startCluster } from './support/cluster.js';

// A cluster as it would be deployed: nginx in front of three hub replicas (one database, one
// Redis), three brokers that reach the hub only through nginx, one of them behind a NAT router
// (it can reach the hub, the hub cannot reach it), and Prometheus scraping every hub and broker.
let cluster: Cluster;
let projectId: string;

beforeAll(async () => {
  cluster = await startCluster({
    postgres: { shared: inject('pgAdminUrl') },
    brokers: [{ name: 'node-a' }, { name: 'node-b' }, { name: 'node-nat', nat: true }],
    prometheus: true,
  });
  projectId = (await cluster.admin.registerProject({ name: 'cluster' })).project.id;
  const m = cluster.marker;
  await cluster.admin.createTemplate({ name: 'hello', projectId, harness: 'command', command: ['sh', '-c', `echo "hello $GRAFT_AGENT_ID"; : ${m}`] });
  await cluster.admin.createTemplate({ name: 'ticker', projectId, harness: 'command', command: ['sh', '-c', `for i in 1 2 3 4 5 6 7 8 9 10; do echo "tick $i"; sleep 0.3; done; : ${m}`] });
  await cluster.admin.createTemplate({ name: 'idle', projectId, harness: 'command', command: ['sh', '-c', `exec sleep 600 # ${m}`] });
}, 120_000);

afterAll(async () => {
  // GRAFT_E2E_CLUSTER_LOGS=<file> keeps every process's log lines of the run, for a failure's post-mortem.
  if (process.env.GRAFT_E2E_CLUSTER_LOGS) cluster?.dumpLogs(process.env.GRAFT_E2E_CLUSTER_LOGS);
  await cluster?.stop();
});

const clientOf = (hub: ClusterHub) => new GraftClient({ baseUrl: hub.url, token: cluster.adminToken, timeoutMs: 10_000 });

async function waitForPhase(id: string, phase: Agent['phase'], timeoutMs: number): Promise<Agent> {
  return eventually(
    async () => {
      const a = await cluster.admin.getAgent(id);
      expect(a.phase).toBe(phase);
      return a;
    },
    { timeoutMs, intervalMs: 200 },
  );
}

/** A live replica other than `owner`. */
function otherThan(owner: ClusterHub): ClusterHub {
  const other = cluster.hubs.find((h) => h.alive && h !== owner);
  if (!other) throw new Error('no second live replica');
  return other;
}

/** Opens an attach WebSocket; resolves once open, or with the HTTP refusal. */
function openAttach(url: string): Promise<{ ws: WebSocket; output: () => string } | { status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${cluster.adminToken}` } });
    let out = '';
    ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) out += data.toString('utf8');
    });
    ws.once('open', () => resolve({ ws, output: () => out }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('error', reject);
  });
}

describe('a cluster behind nginx', () => {
  it('dispatches through every replica to every broker, the NAT-ed one included, and every log arrives whole', async () => {
    const created: Array<{ agent: Agent; broker: ClusterBroker; via: ClusterHub }> = [];
    for (const hub of cluster.hubs) {
      for (const broker of cluster.brokers) {
        const agent = await clientOf(hub).createAgent({ projectId, name: `hello-${hub.index}-${broker.name}`, template: 'hello', brokerId: broker.brokerId });
        expect(agent.brokerId).toBe(broker.brokerId);
        created.push({ agent, broker, via: hub });
      }
    }
    // A replica that does not hold the broker's tunnel must get the create there (routed, or by reconciliation).
    for (const { agent, broker } of created) {
      await waitForPhase(agent.id, 'stopped', 30_000);
      expect(broker.proc.logs.some((l) => l.event === 'agent.started' && l.component === 'supervisor' && l.agentId === agent.id)).toBe(true);
      const log = await readAgentLog(cluster.url, cluster.adminToken, agent.id);
      expect(log.stdout).toBe(`hello ${agent.id}\n`);
      expect(contiguous(log.seqs)).toBe(true);
    }
    // Each agent ran on its broker only.
    for (const b of cluster.brokers) {
      const started = b.proc.logs.filter((l) => l.event === 'agent.started' && l.component === 'supervisor').map((l) => String(l.agentId));
      const twice = started.filter((id, i) => started.indexOf(id) !== i);
      const story = (id: string) => [...b.proc.logs.filter((l) => l.agentId === id), ...cluster.hubs.flatMap((h) => h.proc.logs.filter((l) => l.agentId === id).map((l) => ({ hub: h.index, ...l })))];
      expect(twice, `started more than once on ${b.name}: ${JSON.stringify(twice.map(story), null, 1)}`).toEqual([]);
      expect(started.filter((id) => created.some((c) => c.agent.id === id && c.broker !== b))).toEqual([]);
    }
  }, 90_000);

  it("follows, through replica B, the log of an agent on a broker whose tunnel is on replica A: live and whole", async () => {
    const broker = cluster.broker('node-nat');
    const owner = await cluster.waitForTunnelOwner(broker);
    const reader = otherThan(owner);
    const agent = await cluster.admin.createAgent({ projectId, name: 'ticker-nat', template: 'ticker', brokerId: broker.brokerId });
    await waitForPhase(agent.id, 'running', 30_000);
    const started = Date.now();
    const res = await fetch(`${reader.url}/api/v1/agents/${agent.id}/logs?follow=1&stream=stdout`, { headers: { authorization: `Bearer ${cluster.adminToken}` } });
    expect(res.status).toBe(200);
    const arrivals: Array<{ at: number; text: string }> = [];
    for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) arrivals.push({ at: Date.now() - started, text: Buffer.from(piece).toString('utf8') });
    const expected = Array.from({ length: 10 }, (_, i) => `tick ${i + 1}\n`).join('');
    expect(arrivals.map((x) => x.text).join('')).toBe(expected);
    // Live: the last ticks arrived well after the early ones (10 × 0.3 s), not all at once at the end.
    const early = arrivals.find((x) => x.text.includes('tick 3'));
    const last = arrivals.at(-1);
    expect(early && last && last.at - early.at).toBeGreaterThan(800);
    // The reader was not the owner (the chunks came to it over Redis), and the owner still is.
    expect(cluster.tunnelOwner(broker)).toBe(owner);
  }, 60_000);

  for (const name of ['node-b', 'node-nat']) {
    it(`attaches to an agent on ${name} through a replica that does not hold its tunnel`, async () => {
      const broker = cluster.broker(name);
      const agent = await cluster.admin.createAgent({ projectId, name: `idle-${name}`, template: 'idle', brokerId: broker.brokerId });
      await waitForPhase(agent.id, 'running', 30_000);
      const owner = await cluster.waitForTunnelOwner(broker);
      const via = otherThan(owner);
      const opened = await openAttach(`${via.url.replace(/^http/, 'ws')}/api/v1/agents/${agent.id}/attach?cols=100&rows=30`);
      if (!('ws' in opened)) throw new Error(`attach through replica ${via.index} (tunnel on ${owner.index}) refused: ${opened.status} ${opened.body}`);
      const { ws, output } = opened;
      const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
      ws.send(Buffer.from('echo "v=$((6*7))"; printf \'id-%s\\n\' "$GRAFT_AGENT_ID"; stty size\r'), { binary: true });
      await eventually(
        () => {
          expect(output()).toMatch(/v=42/);
          expect(output()).toContain(`id-${agent.id}`);
          expect(output()).toMatch(/\b30 100\b/);
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      ws.send(Buffer.from('exit\r'), { binary: true });
      expect(await closed).toBe(1000);
      expect((await cluster.admin.getAgent(agent.id)).phase).toBe('running');
      await cluster.admin.agentAction(agent.id, 'stop');
    }, 60_000);
  }

  it('is scraped by Prometheus: every hub and broker up, and non-zero dispatch counters', async () => {
    const prometheus = cluster.prometheus;
    if (!prometheus) throw new Error('the cluster runs Prometheus');
    const targets = cluster.hubs.length + cluster.brokers.length;
    await eventually(
      async () => {
        const up = await prometheus.query('up');
        expect(up).toHaveLength(targets);
        expect(up.filter((s) => s.value !== 1).map((s) => s.metric.instance)).toEqual([]);
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    const names = (await prometheus.query('up{job="broker"}')).map((s) => s.metric.name).sort();
    expect(names).toEqual(cluster.brokers.map((b) => b.name).sort());
    await eventually(
      async () => {
        // Creates sent over the tunnels, summed over the replicas that hold them.
        const sent = await prometheus.query('sum(graft_tunnel_commands_total{command="create"})');
        expect(sent[0]?.value ?? 0).toBeGreaterThan(0);
        // Every broker handled creates, the NAT-ed one included.
        const handled = await prometheus.query('sum by (name) (graft_broker_commands_total{command="create"})');
        expect(Object.fromEntries(handled.map((s) => [s.metric.name, s.value > 0]))).toEqual(Object.fromEntries(cluster.brokers.map((b) => [b.name, true])));
      },
      { timeoutMs: 15_000, intervalMs: 500 },
    );
  }, 60_000);
});
