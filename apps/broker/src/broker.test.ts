import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GraftClient } from '@graft/client';
import { createLogger } from '@graft/log';
import type { Agent } from '@graft/protocol';
import { type HubFixture, registerAndJoinBroker, startHubFixture, writeTestBrokerCredentials, waitUntil } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type RunningBroker, startBroker } from './broker.js';
import { loadBrokerConfig } from './config.js';

let fx: HubFixture;
let admin: GraftClient;
let broker: RunningBroker;
let dataDir: string;
let projectId: string;

const phaseOf = async (id: string) => (await admin.getAgent(id)).phase;
const until = (id: string, test: (a: Agent) => boolean) =>
  waitUntil(async () => {
    const a = await admin.getAgent(id);
    return test(a) ? a : undefined;
  });

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  admin = new GraftClient({ baseUrl: fx.hub.url, token: fx.hub.adminToken });
  projectId = (await admin.registerProject({ name: 'broker-inproc' })).project.id;
  dataDir = mkdtempSync(join(tmpdir(), 'graft-broker-inproc-'));
  writeTestBrokerCredentials(dataDir, await registerAndJoinBroker(fx.hub.url, fx.hub.adminToken, { name: 'inproc', autoProvide: true }));
  const config = loadBrokerConfig({ PATH: '/usr/bin:/bin', GRAFT_BROKER_DATA_DIR: dataDir, GRAFT_BROKER_PORT: '0', GRAFT_BROKER_STOP_GRACE_MS: '2500', GRAFT_LOG_LEVEL: 'error' });
  // The built agent tool, as main.ts would find it (npm test builds before it tests).
  const agentTool = {
    cli: fileURLToPath(new URL('../../../packages/agent/dist/graft-agent.mjs', import.meta.url)),
    library: fileURLToPath(new URL('../../../packages/agent/dist/graft-agent-lib.mjs', import.meta.url)),
  };
  broker = await startBroker(config, createLogger({ level: 'error', sink: () => {} }), { agentTool });
}, 60_000);

afterAll(async () => {
  for (const a of (await admin.listAgents({ projectId })).items) await admin.deleteAgent(a.id).catch(() => {});
  await waitUntil(async () => (await admin.listAgents({ projectId })).items.length === 0).catch(() => {});
  await broker?.stop();
  rmSync(dataDir, { recursive: true, force: true });
  await fx?.stop();
});

describe('broker daemon over a real tunnel', () => {
  it('a slow command (a stop waiting out its grace period) does not hold up a create behind it', async () => {
    await admin.createTemplate({ name: 'stubborn', projectId, harness: 'command', command: ['sh', '-c', 'trap "" TERM; sleep 60'] });
    await admin.createTemplate({ name: 'quick', projectId, harness: 'command', command: ['sleep', '60'] });
    const slow = await admin.createAgent({ projectId, name: 'slow', template: 'stubborn' });
    await until(slow.id, (a) => a.phase === 'running');
    await admin.agentAction(slow.id, 'stop');
    await until(slow.id, (a) => a.phase === 'stopping');
    const fast = await admin.createAgent({ projectId, name: 'fast', template: 'quick' });
    await until(fast.id, (a) => a.phase === 'running');
    // The stop is still waiting for its 2.5 s grace period when the create has finished.
    expect(await phaseOf(slow.id)).toBe('stopping');
    await until(slow.id, (a) => a.phase === 'stopped');
  });

  it('reports its tunnel and load on the local API, and lists exactly what runs here', async () => {
    const health = (await (await fetch(`${broker.url}/healthz`)).json()) as { tunnel: string; load: { runningAgents: number } };
    expect(health.tunnel).toBe('up');
    const local = (await (await fetch(`${broker.url}/api/v1/agents`)).json()) as { items: Array<{ agentId: string; phase: string }> };
    const hub = (await admin.listAgents({ projectId })).items;
    expect(local.items.map((a) => [a.agentId, a.phase]).sort()).toEqual(hub.map((a) => [a.id, a.phase]).sort());
    expect(health.load.runningAgents).toBe(hub.filter((a) => a.phase === 'running').length);
  });

  it('agents find graft-agent on their PATH, with what it needs to report to the hub', async () => {
    await admin.createTemplate({ name: 'reporter', projectId, harness: 'command', command: ['sh', '-c', 'graft-agent status thinking "reading the code" && sleep 30'] });
    const a = await admin.createAgent({ projectId, name: 'reporter', template: 'reporter' });
    const seen = await until(a.id, (x) => x.activity === 'thinking');
    expect(seen).toMatchObject({ phase: 'running', detail: 'reading the code' });
    expect(seen.lastSeenAt).not.toBeNull();
  });
});
