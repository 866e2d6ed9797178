import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { GraftClient } from '@graft/client';
import { type HubFixture, startHubFixture } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AgentClient } from './agent-client.js';
import { AgentConfigError } from './config.js';
import { tokenExpiry } from './token-expiry.js';

const AGENT_MAIN = join(dirname(import.meta.dirname), 'dist', 'main.js');

let fx: HubFixture;
let admin: GraftClient;
let projectId: string;
let tmp: string;
let seq = 0;

beforeAll(async () => {
  // The shortest TTL the hub allows: every fresh token is already inside the 60 s refresh window.
  fx = await startHubFixture(inject('pgAdminUrl'), { env: { GRAFT_AGENT_TOKEN_TTL_SECS: '60' } });
  admin = new GraftClient({ baseUrl: fx.hub.url, token: fx.hub.adminToken });
  projectId = (await admin.registerProject({ name: 'agent-tool' })).project.id;
  await admin.createTemplate({ name: 'scripted', projectId, harness: 'script', command: ['node', 'agent.js'] });
  tmp = mkdtempSync(join(tmpdir(), 'graft-agent-test-'));
});
afterAll(async () => {
  await fx?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** A fresh agent and its own token; unplaced (no broker), so it reports its way to running itself. */
async function newAgent(): Promise<{ id: string; token: string }> {
  seq += 1;
  const agent = await admin.createAgent({ projectId, name: `tool-${seq}`, template: 'scripted' });
  return { id: agent.id, token: (await admin.mintAgentToken(agent.id)).token };
}

async function runningAgent(options: { now?: () => number; tokenFile?: string } = {}): Promise<{ id: string; token: string; client: AgentClient }> {
  const { id, token } = await newAgent();
  const client = new AgentClient({ hubUrl: fx.hub.url, agentId: id, token, ...options });
  for (const phase of ['provisioning', 'starting', 'running'] as const) await client.report({ phase });
  return { id, token, client };
}

const onHub = (id: string) => admin.getAgent(id);

describe('AgentClient against a real hub', () => {
  it('reports status, ask, blocked and done', async () => {
    const { id, client } = await runningAgent();
    expect(await client.status('thinking', 'reading code')).toMatchObject({ phase: 'running', activity: 'thinking', detail: 'reading code' });
    expect(await onHub(id)).toMatchObject({ activity: 'thinking', detail: 'reading code' });
    await client.ask('which branch?');
    expect(await onHub(id)).toMatchObject({ activity: 'waiting_for_input', detail: 'which branch?' });
    await client.blocked('CI is down');
    expect(await onHub(id)).toMatchObject({ activity: 'blocked', detail: 'CI is down' });
    await client.done('renamed foo to bar');
    expect(await onHub(id)).toMatchObject({ activity: 'completed', detail: 'renamed foo to bar' });
  });

  it('relays hook events with source hook, which cannot overwrite a sticky activity', async () => {
    const { id, client } = await runningAgent();
    expect(await client.hook('PreToolUse', { tool_name: 'Bash' })).toMatchObject({ activity: 'executing', detail: 'Bash' });
    await client.ask('may I delete build/?');
    const kept = await client.hook('PreToolUse', { tool_name: 'Edit' });
    expect(kept).toMatchObject({ activity: 'waiting_for_input', detail: 'may I delete build/?' });
    expect(kept?.ignored).toContain('activity');
    expect(await onHub(id)).toMatchObject({ activity: 'waiting_for_input', detail: 'may I delete build/?' });
    // The agent itself moves on; hooks count again.
    await client.status('working');
    expect(await client.hook('BeforeTool', { tool_name: 'run_shell_command' }, 'gemini-cli')).toMatchObject({ activity: 'executing', detail: 'run_shell_command' });
    expect(await client.hook('PreCompact', {})).toBeNull();
    expect((await onHub(id)).activity).toBe('executing');
  });

  it('sends heartbeats that update lastSeenAt', async () => {
    const { id, client } = await runningAgent();
    const before = (await onHub(id)).lastSeenAt;
    await new Promise((r) => setTimeout(r, 10));
    expect(await client.heartbeat()).toEqual({ phase: 'running', activity: 'idle', desiredState: 'running', generation: 1 });
    const after = (await onHub(id)).lastSeenAt;
    expect(Date.parse(after ?? '')).toBeGreaterThan(Date.parse(before ?? ''));
  });

  it('keeps a heartbeat loop going through failures and stops it on request', async () => {
    const { client } = await runningAgent();
    const beats: string[] = [];
    const stop = client.startHeartbeat(30, () => {}, (r) => beats.push(r.phase));
    await new Promise((r) => setTimeout(r, 200));
    stop();
    const n = beats.length;
    expect(n).toBeGreaterThanOrEqual(2);
    await new Promise((r) => setTimeout(r, 100));
    expect(beats.length).toBe(n);

    // A hub that is not there: every tick fails, and the loop keeps trying.
    const away = new AgentClient({ hubUrl: 'http://127.0.0.1:9', agentId: client.agentId, token: 'opaque' });
    const errors: unknown[] = [];
    const stopAway = away.startHeartbeat(20, (err) => errors.push(err));
    await new Promise((r) => setTimeout(r, 300));
    stopAway();
    expect(errors.length).toBeGreaterThanOrEqual(2);
  });

  it('refreshes a token about to expire before the call, and shares it through the token file', async () => {
    const tokenFile = join(tmp, 'token');
    const { id, token } = await newAgent();
    // Tokens carry whole seconds: a second later, a fresh token differs from the minted one.
    await new Promise((r) => setTimeout(r, 1100));
    // A clock ten minutes behind sees the 60 s token as far from expiry and keeps it.
    const calm = new AgentClient({ hubUrl: fx.hub.url, agentId: id, token, now: () => Date.now() - 10 * 60_000 });
    await calm.report({ phase: 'provisioning' });
    expect(calm.currentToken).toBe(token);
    const client = new AgentClient({ hubUrl: fx.hub.url, agentId: id, token, tokenFile });
    // With the real clock the token expires within 60 s, so this call refreshes first.
    await client.report({ phase: 'starting' });
    const refreshed = client.currentToken;
    expect(refreshed).not.toBe(token);
    expect(tokenExpiry(refreshed)).toBeGreaterThan(tokenExpiry(token) ?? 0);
    expect(await new GraftClient({ baseUrl: fx.hub.url, token: refreshed }).me()).toMatchObject({ kind: 'agent', agentId: id });
    expect(readFileSync(tokenFile, 'utf8').trim()).toBe(client.currentToken);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    // Another run starting from the stale env token picks up the newer one.
    const other = new AgentClient({ hubUrl: fx.hub.url, agentId: id, token, tokenFile, now: () => Date.now() - 10 * 60_000 });
    expect(other.currentToken).toBe(client.currentToken);
  });

  it('says which variables are missing', () => {
    expect(() => AgentClient.fromEnv({ GRAFT_HUB_URL: fx.hub.url })).toThrow(AgentConfigError);
    expect(() => AgentClient.fromEnv({ GRAFT_HUB_URL: fx.hub.url })).toThrow(/GRAFT_AGENT_ID, GRAFT_AGENT_TOKEN are not set/);
    expect(() => AgentClient.fromEnv({ GRAFT_HUB_URL: 'ftp://x', GRAFT_AGENT_ID: 'a', GRAFT_AGENT_TOKEN: 't' })).toThrow(/GRAFT_HUB_URL is not an http/);
  });
});

/** Runs the built CLI with only the given env (plus PATH); resolves its exit code and output. */
function runCli(args: string[], env: Record<string, string>, input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [AGENT_MAIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

describe('graft-agent CLI (built)', () => {
  it('reports status and relays hooks end to end', async () => {
    const { id, client } = await runningAgent();
    const env = { GRAFT_HUB_URL: fx.hub.url, GRAFT_AGENT_ID: id, GRAFT_AGENT_TOKEN: client.currentToken };
    const r = await runCli(['status', 'thinking', 'reading code'], env);
    expect(r).toMatchObject({ code: 0, stdout: 'phase=running activity=thinking\n' });
    expect(await onHub(id)).toMatchObject({ activity: 'thinking', detail: 'reading code' });
    const hook = await runCli(['hook', 'PreToolUse'], env, JSON.stringify({ hook_event_name: 'PreToolUse', tool_name: 'Grep' }));
    expect(hook.code).toBe(0);
    expect(await onHub(id)).toMatchObject({ activity: 'executing', detail: 'Grep' });
  });

  it('exits 2 on usage errors, 1 on hub errors, and 0 for hooks whatever happens', async () => {
    const away = { GRAFT_HUB_URL: 'http://127.0.0.1:9', GRAFT_AGENT_ID: '00000000-0000-4000-8000-000000000000', GRAFT_AGENT_TOKEN: 'x' };
    const bad = await runCli(['status', 'dancing'], away);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringMatching(/^graft-agent: unknown activity "dancing"/)]);
    expect((await runCli(['status', 'thinking'], {})).code).toBe(2);
    const unreachable = await runCli(['status', 'thinking'], away);
    expect([unreachable.code, unreachable.stderr]).toEqual([1, expect.stringContaining('cannot reach the hub')]);
    const hook = await runCli(['hook', 'PreToolUse'], away, '{"tool_name":"Bash"}');
    expect([hook.code, hook.stderr]).toEqual([0, expect.stringContaining('warning: hook PreToolUse not reported')]);
    expect((await runCli(['hook', 'PreToolUse'], {}, '{}')).code).toBe(0);
  });
});
