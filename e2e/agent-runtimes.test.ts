import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraftClient } from '@graft/client';
import type { Activity, Agent, BrokerRuntime } from '@graft/protocol';
import { eventually, type HubFixture, startHubFixture } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type TestBroker, TestBrokers } from './support/test-brokers.js';

// Real agents in every runtime, driven through the hub: a `script` agent cloned from the project's
// repository reports its steps through the @graft/agent library, over the broker's relay socket.
let fixture: HubFixture;
let brokers: TestBrokers;
let admin: GraftClient;
let work: string;

/** The project's repository: the script agent the template runs (`script` harness: node agent.mjs). */
const AGENT_SCRIPT = `
const { AgentClient, loadInbox, waitForMessages } = await import(process.env.GRAFT_AGENT_LIB);
const agent = AgentClient.fromEnv(process.env);
const pause = (ms) => new Promise((r) => setTimeout(r, ms));
await agent.status('thinking', 'reading ' + (process.env.GRAFT_TASK ?? ''));
await pause(400);
await agent.status('executing', 'npm test');
await pause(400);
await agent.ask('which branch?');
const inbox = loadInbox(process.env);
let got = [];
while (got.length === 0) got = await waitForMessages(inbox.path, 30000, 100, inbox.offsetFile);
await agent.status('executing', 'pushing to ' + got[0].text);
await pause(400);
await agent.done('pushed to ' + got[0].text);
await pause(600);
`;

function git(cwd: string, ...args: string[]): void {
  execFileSync('git', args, { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, GIT_AUTHOR_NAME: 'e2e', GIT_AUTHOR_EMAIL: 'e2e@graft', GIT_COMMITTER_NAME: 'e2e', GIT_COMMITTER_EMAIL: 'e2e@graft' }, stdio: 'ignore' });
}

beforeAll(async () => {
  fixture = await startHubFixture(inject('pgAdminUrl'), { env: { GRAFT_AGENT_STALLED_AFTER_SECS: '1.5' } });
  brokers = new TestBrokers(fixture.hub.url, fixture.hub.adminToken);
  admin = new GraftClient({ baseUrl: fixture.hub.url, token: fixture.hub.adminToken, timeoutMs: 10_000 });
  work = mkdtempSync(join(tmpdir(), 'graft-e2e-runtimes-'));
  chmodSync(work, 0o755);
});

/** A project repository holding the script agent (each project its own: a remote names one project). */
function makeRepo(name: string): string {
  const repo = join(work, name);
  mkdirSync(repo);
  writeFileSync(join(repo, 'agent.mjs'), AGENT_SCRIPT);
  git(repo, 'init', '-q');
  git(repo, 'add', '.');
  git(repo, 'commit', '-qm', 'agent');
  return repo;
}

afterAll(async () => {
  await brokers?.cleanup();
  await fixture?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Polls the agent every 40 ms until `done`; returns every distinct activity the hub showed, in order. */
async function watchActivities(id: string, done: (a: Agent) => boolean, onEach: (a: Agent) => Promise<void> = async () => {}, timeoutMs = 60_000): Promise<{ seen: Activity[]; last: Agent }> {
  const seen: Activity[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const a = await admin.getAgent(id);
    if (a.activity !== null && seen.at(-1) !== a.activity) seen.push(a.activity);
    await onEach(a);
    if (done(a)) return { seen, last: a };
    if (a.phase === 'error') throw new Error(`agent ${a.name} failed: ${a.detail}`);
    if (Date.now() > deadline) throw new Error(`agent ${a.name} stuck in ${a.phase}/${a.activity}; saw ${seen.join(' → ')}`);
    await new Promise((r) => setTimeout(r, 40));
  }
}

const RUNTIMES: Array<{ runtime: BrokerRuntime; network: boolean }> = [
  { runtime: 'process', network: true },
  // Without network: the agent reaches the hub only through the relay socket its broker mounts.
  { runtime: 'bwrap', network: false },
  { runtime: 'docker', network: false },
];

/** What a docker-runtime broker needs: the run's Podman service and the test agent image (vitest.global-setup.ts). */
const dockerEnv = () => ({ DOCKER_HOST: `unix://${inject('dockerSocket')}`, GRAFT_BROKER_DOCKER_IMAGE: inject('testAgentImage') });

/** Containers on the run's engine labelled with a broker, straight from the Docker API. */
function containersOf(brokerId: string): Promise<Array<{ Id: string; State: string; Labels: Record<string, string> }>> {
  const filters = encodeURIComponent(JSON.stringify({ label: [`graft.broker=${brokerId}`] }));
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath: inject('dockerSocket'), path: `/v1.41/containers/json?all=true&filters=${filters}` }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`docker API ${res.statusCode}: ${body}`))));
    });
    req.once('error', reject);
    req.end();
  });
}

describe.each(RUNTIMES)('a script agent in the $runtime runtime', ({ runtime, network }) => {
  let projectId: string;
  let broker: TestBroker;

  beforeAll(async () => {
    projectId = (await admin.registerProject({ name: `rt-${runtime}`, gitRemote: makeRepo(`repo-${runtime}`) })).project.id;
    broker = await brokers.add(`rt-${runtime}`, { register: { projectIds: [projectId] }, env: { GRAFT_BROKER_RUNTIMES: runtime, ...(runtime === 'docker' ? dockerEnv() : {}) } });
    await admin.createTemplate({ name: 'walker', projectId, harness: 'script', command: ['agent.mjs'], runtime, network });
  });

  it('clones the project, then walks thinking → executing → waiting_for_input → (message) → executing → completed, visible on the hub', async () => {
    const created = await admin.createAgent({ projectId, name: 'walker', template: 'walker', task: 'the issue' });
    expect(created.brokerId).toBe(broker.brokerId);
    let answered = false;
    const { seen, last } = await watchActivities(
      created.id,
      (a) => a.phase === 'stopped',
      async (a) => {
        if (a.activity === 'waiting_for_input' && !answered) {
          answered = true;
          expect(a.detail).toBe('which branch?');
          await admin.sendMessage(a.id, { body: 'main' });
        }
      },
    );
    // A running agent is idle until it reports (a poll may or may not catch that moment).
    expect(seen[0] === 'idle' ? seen.slice(1) : seen).toEqual(['thinking', 'executing', 'waiting_for_input', 'executing', 'completed']);
    expect(last).toMatchObject({ phase: 'stopped', detail: 'exited with code 0' });
    const messages = await admin.listMessages(created.id);
    expect(messages.items.map((m) => [m.body, m.state])).toEqual([['main', 'delivered']]);
    const workspace = join(broker.dataDir, 'agents', runtime, created.id, 'workspace');
    expect(readFileSync(join(workspace, 'agent.mjs'), 'utf8')).toBe(AGENT_SCRIPT);
  });
});

describe('harnesses and liveness on a real broker', () => {
  let projectId: string;
  let fakeBin: string;

  beforeAll(async () => {
    projectId = (await admin.registerProject({ name: 'rt-harness' })).project.id;
    // A stand-in for the Claude Code CLI: records its command line, reports through the hook the
    // broker configured, then waits like a session would.
    fakeBin = join(work, 'fake-bin');
    mkdirSync(fakeBin);
    writeFileSync(
      join(fakeBin, 'claude'),
      [
        '#!/bin/sh',
        'printf "%s\\n" "$*" >> argv.log',
        'hook=$(node -e "const s=require(\'./.claude/settings.json\'); console.log(s.hooks.UserPromptSubmit[0].hooks[0].command)")',
        'echo \'{"prompt":"go"}\' | sh -c "$hook"',
        `exec sleep 300 # ${brokers.marker}`,
        '',
      ].join('\n'),
    );
    chmodSync(join(fakeBin, 'claude'), 0o755);
    await brokers.add('rt-harness', { register: { projectIds: [projectId] }, env: { PATH: `${fakeBin}:${process.env.PATH ?? '/usr/bin:/bin'}` } });
    await admin.createTemplate({ name: 'claude', projectId, harness: 'claude-code' });
    await admin.createTemplate({ name: 'hangs', projectId, harness: 'command', command: ['sh', '-c', `graft-agent status executing "stuck in a loop" && exec sleep 300 # ${brokers.marker}`] });
  });

  it('a suspended claude-code agent is resumed with --continue on its command line, and its hook reports', async () => {
    const a = await admin.createAgent({ projectId, name: 'claude', template: 'claude', task: 'fix the flaky test' });
    // The UserPromptSubmit hook maps to working.
    await watchActivities(a.id, (x) => x.activity === 'working');
    const argvLog = join(brokers.all.find((b) => b.name === 'rt-harness')?.dataDir ?? '', 'agents', 'process', a.id, 'workspace', 'argv.log');
    expect(readFileSync(argvLog, 'utf8')).toBe('-p --output-format stream-json --verbose -- fix the flaky test\n');
    await admin.agentAction(a.id, 'suspend');
    await eventually(async () => expect((await admin.getAgent(a.id)).phase).toBe('suspended'), { timeoutMs: 15_000 });
    await admin.agentAction(a.id, 'start');
    await eventually(async () => expect(readFileSync(argvLog, 'utf8').split('\n')).toHaveLength(3), { timeoutMs: 15_000 });
    expect(readFileSync(argvLog, 'utf8').split('\n')[1]).toBe('-p --output-format stream-json --verbose --continue -- fix the flaky test');
    await eventually(async () => expect(await admin.getAgent(a.id)).toMatchObject({ phase: 'running', activity: 'working' }), { timeoutMs: 15_000 });
  });

  it('a hung agent is marked stalled and, with auto-suspend on, suspended: its process stops', async () => {
    await admin.updateProject(projectId, { autoSuspendStalled: true });
    const a = await admin.createAgent({ projectId, name: 'hung', template: 'hangs' });
    const { seen } = await watchActivities(a.id, (x) => x.phase === 'suspended');
    expect(seen[0] === 'idle' ? seen.slice(1) : seen).toEqual(['executing', 'stalled']);
    const after = await admin.getAgent(a.id);
    expect(after).toMatchObject({ desiredState: 'suspended', phase: 'suspended' });
    const pidFile = join(brokers.all.find((b) => b.name === 'rt-harness')?.dataDir ?? '', 'agents', 'process', a.id, 'pid');
    expect(existsSync(pidFile)).toBe(false);
  });
});

describe('containers across a broker restart', () => {
  it('a broker killed while its containers run re-adopts them on restart: same containers, no duplicates, agents keep running', async () => {
    const projectId = (await admin.registerProject({ name: 'rt-readopt' })).project.id;
    const b = await brokers.add('rt-readopt', { register: { projectIds: [projectId] }, env: { GRAFT_BROKER_RUNTIMES: 'docker', ...dockerEnv() } });
    await admin.createTemplate({ name: 'long', projectId, harness: 'command', runtime: 'docker', command: ['sh', '-c', 'echo started >> runs.txt; exec sleep 300'] });
    const agents = await Promise.all(['one', 'two'].map((name) => admin.createAgent({ projectId, name, template: 'long' })));
    for (const a of agents) await eventually(async () => expect((await admin.getAgent(a.id)).phase).toBe('running'), { timeoutMs: 30_000 });
    const before = await containersOf(b.brokerId);
    expect(before.map((c) => c.State)).toEqual(['running', 'running']);
    expect(before.map((c) => c.Labels['graft.agent-id']).sort()).toEqual(agents.map((a) => a.id).sort());

    const restarted = await brokers.restart(b);
    await restarted.waitForLog((l) => l.event === 'tunnel.connected');
    // The reconnect's reconciliation ran; nothing was started again.
    await new Promise((r) => setTimeout(r, 1_000));
    const after = await containersOf(b.brokerId);
    expect(after.map((c) => [c.Id, c.State]).sort()).toEqual(before.map((c) => [c.Id, 'running']).sort());
    for (const a of agents) {
      expect(await admin.getAgent(a.id)).toMatchObject({ phase: 'running', brokerId: b.brokerId });
      expect(readFileSync(join(b.dataDir, 'agents', 'docker', a.id, 'workspace', 'runs.txt'), 'utf8')).toBe('started\n');
    }
    // And the adopted containers are still under control: deleting the agents removes them.
    for (const a of agents) await admin.deleteAgent(a.id);
    await eventually(async () => expect(await containersOf(b.brokerId)).toEqual([]), { timeoutMs: 30_000 });
  });
});
