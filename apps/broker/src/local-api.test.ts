import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@graft/log';
import { type DesiredAgent, signRequest } from '@graft/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRecords } from './agent-records.js';
import { AgentSupervisor } from './agent-supervisor.js';
import { createBrokerMetrics } from './broker-metrics.js';
import { type LocalApi, startLocalApi } from './local-api.js';
import { ProcessRuntime } from './runtime/process-runtime.js';

const quiet = createLogger({ level: 'error', sink: () => {} });
const brokerId = '0196f0c4-aaaa-7000-8000-000000000001';
const secretKey = randomBytes(32).toString('base64url');
let dataDir: string;
let runtime: ProcessRuntime;
let api: LocalApi;

const agent: DesiredAgent = {
  agentId: '0196f0c4-aaaa-7000-8000-0000000000a1',
  generation: 1,
  desiredState: 'running',
  resume: false,
  observedPhase: 'created',
  observedGeneration: 0,
  spec: { projectId: brokerId, name: 'local', harness: 'command', runtime: 'process', image: null, command: ['sleep', '30'], env: {}, task: null, labels: {}, network: true, resources: {}, repository: null, secretEnv: [] },
};

function post(body: string, headers: Record<string, string>) {
  return fetch(`${api.url}/api/v1/agents`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
}
const sign = (body: string, secret = secretKey, id = brokerId) =>
  signRequest({ method: 'POST', path: '/api/v1/agents', body, contentType: 'application/json', brokerId: id, secret });

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'graft-local-api-'));
  runtime = new ProcessRuntime({ rootDir: join(dataDir, 'agents'), baseEnv: { PATH: '/usr/bin:/bin' }, log: quiet });
  const metrics = createBrokerMetrics(() => new Map([['running', 1]]));
  const supervisor = new AgentSupervisor({ records: new AgentRecords(dataDir), runtimes: new Map([['process', runtime]]), maxAgents: 4, stopGraceMs: 200, gitEnv: {}, metrics, log: quiet });
  api = await startLocalApi({ host: '127.0.0.1', port: 0, brokerId, secretKey, supervisor, metrics, tunnelUp: () => false, version: 'test', log: quiet });
});

afterAll(async () => {
  await api?.close();
  for (const id of (await runtime?.list()) ?? []) await runtime.remove(id);
  await runtime?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('broker local API', () => {
  it('serves health and Prometheus metrics', async () => {
    const health = await (await fetch(`${api.url}/healthz`)).json();
    expect(health).toMatchObject({ status: 'ok', brokerId, tunnel: 'down', load: { maxAgents: 4 } });
    const metrics = await (await fetch(`${api.url}/metrics`)).text();
    expect(metrics).toContain('graft_broker_agents{phase="running"} 1');
    expect(metrics).toContain('graft_broker_runtime_start_seconds');
  });

  it('refuses unsigned, wrongly signed, replayed and malformed creates with their own codes', async () => {
    const body = JSON.stringify(agent);
    const codeOf = async (r: Response) => [r.status, ((await r.json()) as { error: { code: string } }).error.code];
    expect(await codeOf(await post(body, {}))).toEqual([401, 'signature_missing']);
    expect(await codeOf(await post(body, sign(body, randomBytes(32).toString('base64url'))))).toEqual([401, 'signature_invalid']);
    // Signed for another broker id, even with the right secret: not for this broker.
    expect(await codeOf(await post(body, sign(body, secretKey, '0196f0c4-aaaa-7000-8000-000000000002')))).toEqual([401, 'signature_invalid']);
    // The body is covered by the signature.
    expect(await codeOf(await post(body.replace('sleep', 'sleeq'), sign(body)))).toEqual([401, 'signature_invalid']);
    const bad = JSON.stringify({ ...agent, generation: 0 });
    expect(await codeOf(await post(bad, sign(bad)))).toEqual([400, 'validation_error']);
    const headers = sign(body);
    const ok = await post(body, headers);
    expect(ok.status).toBe(202);
    expect(await ok.json()).toMatchObject({ agent: { agentId: agent.agentId, phase: 'running' } });
    expect(await codeOf(await post(body, headers))).toEqual([401, 'replayed_request']);
  });

  it('lists what runs here', async () => {
    const list = (await (await fetch(`${api.url}/api/v1/agents`)).json()) as { items: Array<Record<string, unknown>> };
    expect(list.items).toEqual([expect.objectContaining({ agentId: agent.agentId, phase: 'running', desiredState: 'running', name: 'local', runtime: 'process' })]);
    expect((await fetch(`${api.url}/nope`)).status).toBe(404);
  });
});
