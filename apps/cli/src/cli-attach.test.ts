import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraftClient } from '@graft/client';
import type { Agent } from '@graft/protocol';
import { type BrokerProcess, eventually, type HubFixture, registerAndJoinBroker, startBrokerProcess, startHubFixture } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachUrl, DETACH_BYTE, splitAtDetach } from './commands/attach-command.js';
import { CLI_MAIN, ERROR_LINE, tempConfigDir } from './test-support/run-cli.js';

// `graft attach` against a real hub and broker: input piped in (no terminal here), so the command
// forwards it as it comes; the shell runs on a pty inside the agent's environment on the broker.
let fx: HubFixture;
let broker: BrokerProcess;
let admin: GraftClient;
let projectId: string;
let cliEnv: Record<string, string>;
const dirs: string[] = [];
const children: ChildProcess[] = [];
const MARKER = `graft-cli-attach-${randomBytes(6).toString('hex')}`;

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  admin = new GraftClient({ baseUrl: fx.hub.url, token: fx.hub.adminToken, timeoutMs: 10_000 });
  projectId = (await admin.registerProject({ name: 'cli-attach' })).project.id;
  const dataDir = mkdtempSync(join(tmpdir(), 'graft-cli-attach-broker-'));
  dirs.push(dataDir);
  broker = await startBrokerProcess({ dataDir, credentials: await registerAndJoinBroker(fx.hub.url, fx.hub.adminToken, { name: 'attach-node', projectIds: [projectId] }) });
  await broker.waitForLog((l) => l.event === 'tunnel.connected');
  cliEnv = { GRAFT_CONFIG_DIR: tempConfigDir(), GRAFT_HUB_URL: fx.hub.url, GRAFT_TOKEN: fx.hub.adminToken };
}, 60_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const a of (await admin.listAgents({ projectId })).items) await admin.deleteAgent(a.id).catch(() => {});
  await eventually(async () => expect((await admin.listAgents({ projectId })).items).toEqual([]), { timeoutMs: 15_000 }).catch(() => {});
  await broker?.stop('SIGKILL');
  await fx?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function attach(agentId: string): { child: ChildProcess; stdout: () => string; ended: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, [CLI_MAIN, 'attach', agentId], { env: { HOME: tmpdir(), ...cliEnv }, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => {
    stdout += c.toString('utf8');
  });
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  const ended = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
  return { child, stdout: () => stdout, ended };
}

async function running(name: string): Promise<Agent> {
  await admin.createTemplate({ name, projectId, harness: 'command', command: ['sh', '-c', `sleep 120; : ${MARKER}`] });
  const a = await admin.createAgent({ projectId, name, template: name });
  await eventually(async () => expect((await admin.getAgent(a.id)).phase).toBe('running'), { timeoutMs: 15_000 });
  return a;
}

describe('graft attach (pure)', () => {
  it('splits input at Ctrl-] and builds the WebSocket URL', () => {
    expect(splitAtDetach(Buffer.from('ls\r'))).toEqual({ send: Buffer.from('ls\r'), detach: false });
    expect(splitAtDetach(Buffer.from([0x61, DETACH_BYTE, 0x62]))).toEqual({ send: Buffer.from('a'), detach: true });
    expect(attachUrl('https://hub.example:8443', '0196f0c4-0000-7000-8000-000000000001', 100, 30)).toBe(
      'wss://hub.example:8443/api/v1/agents/0196f0c4-0000-7000-8000-000000000001/attach?cols=100&rows=30',
    );
  });
});

describe('graft attach', () => {
  it('forwards typed input to a shell in the agent and prints its output; the shell exiting ends the command, the agent keeps running', async () => {
    const a = await running('shell');
    const run = attach(a.id);
    run.child.stdin?.write('echo "answer=$((6*7)) in $(basename "$PWD")"\r');
    await eventually(() => expect(run.stdout()).toContain('answer=42 in workspace'), { timeoutMs: 15_000 });
    run.child.stdin?.write('exit\r');
    const end = await run.ended;
    expect(end.code, end.stderr).toBe(0);
    expect((await admin.getAgent(a.id)).phase).toBe('running');
  });

  it('Ctrl-] detaches: exit 0 with a note, the agent keeps running', async () => {
    const a = await running('detach');
    const run = attach(a.id);
    run.child.stdin?.write('echo ready-$((1+1))\r');
    await eventually(() => expect(run.stdout()).toContain('ready-2'), { timeoutMs: 15_000 });
    run.child.stdin?.write(Buffer.from([DETACH_BYTE]));
    const end = await run.ended;
    expect(end.code).toBe(0);
    expect(end.stderr).toContain('detached; the agent keeps running');
    expect((await admin.getAgent(a.id)).phase).toBe('running');
  });

  it('an agent that does not run, or a bad id, fails with one line', async () => {
    await admin.createTemplate({ name: 'done', projectId, harness: 'command', command: ['true'] });
    const done = await admin.createAgent({ projectId, name: 'done', template: 'done' });
    await eventually(async () => expect((await admin.getAgent(done.id)).phase).toBe('stopped'), { timeoutMs: 15_000 });
    const refused = await attach(done.id).ended;
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(ERROR_LINE);
    expect(refused.stderr).toContain('code conflict');
    const bad = await attach('not-an-id').ended;
    expect(bad.code).toBe(2);
  });
});
