import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@graft/log';
import type { DesiredAgent, ObservedAgent } from '@graft/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentRecords } from './agent-records.js';
import { AgentSupervisor } from './agent-supervisor.js';
import { createBrokerMetrics } from './broker-metrics.js';
import { ProcessRuntime } from './runtime/process-runtime.js';

const quiet = createLogger({ level: 'error', sink: () => {} });
const dirs: string[] = [];
const runtimes: ProcessRuntime[] = [];
let n = 0;

function node(dataDir = mkdtempSync(join(tmpdir(), 'graft-supervisor-')), maxAgents = 10, path = '/usr/bin:/bin') {
  if (!dirs.includes(dataDir)) dirs.push(dataDir);
  const runtime = new ProcessRuntime({ rootDir: join(dataDir, 'agents'), baseEnv: { PATH: path }, log: quiet, pollIntervalMs: 100 });
  runtimes.push(runtime);
  const reports: ObservedAgent[] = [];
  const removed: string[] = [];
  const supervisor = new AgentSupervisor({
    records: new AgentRecords(dataDir),
    runtimes: new Map([['process', runtime]]),
    maxAgents,
    stopGraceMs: 300,
    gitEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    metrics: createBrokerMetrics(() => new Map()),
    log: quiet,
  });
  supervisor.onStatus((a) => reports.push(a));
  supervisor.onRemoved((id) => removed.push(id));
  const phases = (id: string) => reports.filter((r) => r.agentId === id).map((r) => r.phase);
  const workspace = (id: string) => join(dataDir, 'agents', id, 'workspace');
  return { dataDir, runtime, supervisor, reports, removed, phases, workspace };
}

function desired(command: string[], over: Partial<DesiredAgent> = {}): DesiredAgent {
  n++;
  const agentId = `0196f0c4-0000-7000-8000-${String(n).padStart(12, '0')}`;
  return {
    agentId,
    generation: 1,
    desiredState: 'running',
    resume: false,
    observedPhase: 'created',
    observedGeneration: 0,
    spec: { projectId: agentId, name: `a${n}`, harness: 'command', runtime: 'process', image: null, command, env: { GREETING: 'hi' }, task: null, labels: {}, network: true, resources: {}, repository: null, secretEnv: [] },
    ...over,
  };
}

async function until(test: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

afterEach(async () => {
  for (const r of runtimes.splice(0)) {
    for (const id of await r.list()) await r.remove(id);
    await r.close();
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('AgentSupervisor with the process runtime', () => {
  it('starts an agent through provisioning, starting, running; exit 0 ends stopped', async () => {
    const { supervisor, phases, reports, workspace } = node();
    const d = desired(['sh', '-c', 'echo "$GREETING" > out.txt']);
    const out = await supervisor.command('create', d);
    expect(out).toMatchObject({ ok: true, agent: { phase: 'running', generation: 1 } });
    await until(() => phases(d.agentId).includes('stopped'));
    expect(phases(d.agentId)).toEqual(['provisioning', 'starting', 'running', 'stopped']);
    expect(reports.at(-1)).toMatchObject({ detail: 'exited with code 0', exitCode: 0 });
    expect(readFileSync(join(workspace(d.agentId), 'out.txt'), 'utf8')).toBe('hi\n');
  });

  it('a non-zero exit ends in error with the code and the last lines of output', async () => {
    const { supervisor, reports, phases } = node();
    const d = desired(['sh', '-c', 'echo one; echo two >&2; exit 3']);
    await supervisor.command('create', d);
    await until(() => phases(d.agentId).includes('error'));
    expect(reports.at(-1)).toMatchObject({ phase: 'error', exitCode: 3 });
    expect(reports.at(-1)?.detail).toMatch(/^exit code 3; last output:\none\ntwo$/);
  });

  it('a command that cannot start ends in error saying why', async () => {
    const { supervisor } = node();
    const out = await supervisor.command('create', desired([], { spec: { ...desired(['x']).spec, command: null } }));
    expect(out.ok && out.agent?.phase).toBe('error');
    expect(out.ok && out.agent?.detail).toMatch(/^could not start: /);
  });

  it('refuses beyond its capacity, and takes the agent once a slot is free', async () => {
    const { supervisor } = node(undefined, 1);
    const a = desired(['sleep', '30']);
    const b = desired(['sleep', '30']);
    const [ra, rb] = await Promise.all([supervisor.command('create', a), supervisor.command('create', b)]);
    expect([ra.ok, rb.ok].sort()).toEqual([false, true]);
    const refused = ra.ok ? rb : ra;
    expect(refused).toMatchObject({ ok: false, code: 'no_capacity' });
    const [first, second] = ra.ok ? [a, b] : [b, a];
    expect(await supervisor.command('stop', { ...first, generation: 2, desiredState: 'stopped' })).toMatchObject({ ok: true, agent: { phase: 'stopped' } });
    expect(await supervisor.command('create', second)).toMatchObject({ ok: true, agent: { phase: 'running' } });
  });

  it('acts on a generation once: refuses older ones, does not re-run a finished one, restarts fresh on a newer one', async () => {
    const { supervisor, phases, workspace, runtime } = node();
    const d = desired(['sh', '-c', 'touch marker; echo $$ >> runs; sleep 30']);
    await supervisor.command('create', d);
    await until(() => existsSync(join(workspace(d.agentId), 'runs')));
    // The same generation again (a reconnect's desired set) changes nothing.
    await supervisor.reconcile([d]);
    expect(phases(d.agentId)).toEqual(['provisioning', 'starting', 'running']);
    const restart = { ...d, generation: 3 };
    expect(await supervisor.command('start', restart)).toMatchObject({ ok: true, agent: { phase: 'running', generation: 3 } });
    expect(phases(d.agentId)).toEqual(['provisioning', 'starting', 'running', 'stopping', 'stopped', 'provisioning', 'starting', 'running']);
    await until(() => existsSync(join(workspace(d.agentId), 'runs')));
    // Fresh: the new run's workspace does not hold the old run's file list.
    expect(readFileSync(join(workspace(d.agentId), 'runs'), 'utf8').trim().split('\n')).toHaveLength(1);
    expect(await supervisor.command('stop', { ...d, generation: 2, desiredState: 'stopped' })).toMatchObject({ ok: false, code: 'stale_generation' });
    expect((await runtime.inspect(d.agentId)).state).toBe('running');
  });

  it('suspend keeps the workspace, and a resuming start sees it and GRAFT_RESUME=1', async () => {
    const { supervisor, phases, workspace } = node();
    // A shell expansion, not a JS template: the agent prints 0 unless the runtime set GRAFT_RESUME.
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax
    const d = desired(['sh', '-c', 'echo "resume=${GRAFT_RESUME:-0}" >> log; sleep 30']);
    await supervisor.command('create', d);
    await until(() => existsSync(join(workspace(d.agentId), 'log')));
    expect(await supervisor.command('suspend', { ...d, generation: 2, desiredState: 'suspended' })).toMatchObject({ ok: true, agent: { phase: 'suspended' } });
    await supervisor.command('start', { ...d, generation: 3, resume: true });
    await until(() => readFileSync(join(workspace(d.agentId), 'log'), 'utf8').includes('resume=1'));
    expect(readFileSync(join(workspace(d.agentId), 'log'), 'utf8')).toBe('resume=0\nresume=1\n');
    expect(phases(d.agentId).slice(3)).toEqual(['suspended', 'provisioning', 'starting', 'running']);
  });

  it('delete stops the agent and removes everything it had on the node', async () => {
    const { supervisor, removed, runtime, dataDir, workspace } = node();
    const d = desired(['sleep', '30']);
    await supervisor.command('create', d);
    expect(existsSync(workspace(d.agentId))).toBe(true);
    expect(await supervisor.command('delete', { ...d, generation: 2, desiredState: 'deleted' })).toEqual({ ok: true, agent: null });
    expect(removed).toEqual([d.agentId]);
    expect((await runtime.inspect(d.agentId)).state).toBe('absent');
    expect(existsSync(join(dataDir, 'agents', d.agentId))).toBe(false);
    expect(supervisor.inventory()).toEqual([]);
  });

  it('reconcile removes what is not desired and does not run again what the hub saw finish', async () => {
    const { supervisor, runtime, phases } = node();
    const stray = desired(['sleep', '30']);
    await supervisor.command('create', stray);
    const finished = desired(['sh', '-c', 'touch ran'], { observedPhase: 'stopped', observedGeneration: 1 });
    await supervisor.reconcile([finished]);
    expect((await runtime.inspect(stray.agentId)).state).toBe('absent');
    expect(phases(finished.agentId)).toEqual(['stopped']);
    expect((await runtime.inspect(finished.agentId)).state).not.toBe('running');
  });

  it('messages reach the agent; a message for an unknown agent is refused', async () => {
    const { supervisor, dataDir } = node();
    const d = desired(['sleep', '30']);
    await supervisor.command('create', d);
    expect(await supervisor.command('message', d, 'hello agent')).toMatchObject({ ok: true });
    const inbox = readFileSync(join(dataDir, 'agents', d.agentId, 'inbox.jsonl'), 'utf8');
    expect(JSON.parse(inbox.trim()).text).toBe('hello agent');
    expect(await supervisor.command('message', desired(['true']), 'x')).toMatchObject({ ok: false, code: 'unknown_agent' });
  });

  it('after a broker restart, starts again what it was starting (or restarting) when it died', async () => {
    const { dataDir, runtime } = node();
    const starting = desired(['sleep', '30']);
    const restarting = desired(['sleep', '30'], { generation: 2 });
    // The broker died after recording these starts and preparing their workspaces, before anything ran.
    const records = new AgentRecords(dataDir);
    records.put({ agentId: starting.agentId, generation: 1, desired: 'running', spec: starting.spec, phase: 'starting', detail: null, exitCode: null, acted: false });
    records.put({ agentId: restarting.agentId, generation: 2, desired: 'running', spec: restarting.spec, phase: 'stopping', detail: null, exitCode: null, acted: false });
    for (const d of [starting, restarting]) await runtime.prepare(d.agentId, d.spec, { fresh: true });
    const second = node(dataDir);
    await second.supervisor.recover();
    // Neither is taken for a finished run: the same generation, sent again on connect, starts them.
    expect(second.supervisor.inventory().map((a) => a.phase).sort()).toEqual(['starting', 'stopping']);
    await second.supervisor.reconcile([
      { ...starting, observedPhase: 'starting', observedGeneration: 1 },
      { ...restarting, observedPhase: 'stopping', observedGeneration: 2 },
    ]);
    for (const d of [starting, restarting]) {
      expect((await second.runtime.inspect(d.agentId)).state).toBe('running');
      expect(second.phases(d.agentId)).toEqual(['stopped', 'provisioning', 'starting', 'running']);
    }
  });

  it('after a broker restart, a resume or a fresh start cut short is redone, while a run that ended is not repeated', async () => {
    const { dataDir, runtime } = node();
    const resuming = desired(['sleep', '30'], { generation: 3, resume: true });
    const restarting = desired(['sleep', '30'], { generation: 5 });
    const finished = desired(['true'], { generation: 2 });
    const records = new AgentRecords(dataDir);
    // Durable records as a broker leaves them when it dies before the start's first durable phase:
    // the new generation is written, the phase is still the previous run's.
    records.put({ agentId: resuming.agentId, generation: 3, desired: 'running', spec: resuming.spec, phase: 'suspended', detail: null, exitCode: null, acted: false });
    records.put({ agentId: restarting.agentId, generation: 5, desired: 'running', spec: restarting.spec, phase: 'stopped', detail: null, exitCode: null, acted: false });
    records.put({ agentId: finished.agentId, generation: 2, desired: 'running', spec: finished.spec, phase: 'stopped', detail: 'exited with code 0', exitCode: 0, acted: true });
    for (const d of [resuming, restarting, finished]) await runtime.prepare(d.agentId, d.spec, { fresh: true });
    const second = node(dataDir);
    await second.supervisor.recover();
    await second.supervisor.reconcile([resuming, restarting, finished]);
    expect((await second.runtime.inspect(resuming.agentId)).state).toBe('running');
    expect((await second.runtime.inspect(restarting.agentId)).state).toBe('running');
    expect(second.phases(finished.agentId)).toEqual([]);
    expect((await second.runtime.inspect(finished.agentId)).state).toBe('idle');
  });

  it('after a broker restart, a suspend it was in the middle of ends suspended, and resumes later', async () => {
    const { dataDir, runtime } = node();
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax
    const d = desired(['sh', '-c', 'echo "resume=${GRAFT_RESUME:-0}" >> log; sleep 30']);
    const records = new AgentRecords(dataDir);
    // The broker died while stopping the process for a suspend (generation 2): the record still says running.
    records.put({ agentId: d.agentId, generation: 2, desired: 'suspended', spec: d.spec, phase: 'running', detail: null, exitCode: null, acted: false });
    await runtime.prepare(d.agentId, d.spec, { fresh: true });
    const second = node(dataDir);
    await second.supervisor.recover();
    expect(second.supervisor.inventory()).toEqual([expect.objectContaining({ agentId: d.agentId, phase: 'suspended' })]);
    await second.supervisor.command('start', { ...d, generation: 3, resume: true });
    await until(() => existsSync(join(second.workspace(d.agentId), 'log')));
    expect(readFileSync(join(second.workspace(d.agentId), 'log'), 'utf8')).toBe('resume=1\n');
  });

  it('after a broker restart, adopts what still runs and reports what exited meanwhile', async () => {
    const first = node();
    const long = desired(['sleep', '30']);
    const short = desired(['sh', '-c', 'sleep 0.3; exit 4']);
    await first.supervisor.command('create', long);
    await first.supervisor.command('create', short);
    // The broker process dies: its runtime instance stops watching, the agents keep running.
    await first.runtime.close();
    await new Promise((r) => setTimeout(r, 600));
    const second = node(first.dataDir);
    await second.supervisor.recover();
    const inventory = Object.fromEntries(second.supervisor.inventory().map((a) => [a.agentId, a]));
    expect(inventory[long.agentId]).toMatchObject({ phase: 'running', generation: 1 });
    expect(inventory[short.agentId]).toMatchObject({ phase: 'error', exitCode: 4 });
    // The adopted run is watched too: its end is reported by the new instance.
    expect(await second.supervisor.command('stop', { ...long, generation: 2, desiredState: 'stopped' })).toMatchObject({ ok: true, agent: { phase: 'stopped' } });
  });

  it('clones the project repository into the workspace in a cloning phase, then runs a script harness from it', async () => {
    const { supervisor, phases, reports, dataDir, runtime } = node();
    const repo = join(dataDir, 'origin');
    mkdirSync(repo);
    const script = ["import { readFileSync } from 'node:fs';", "const readme = readFileSync('README', 'utf8').trim();", "console.log('task=' + process.env.GRAFT_TASK + ' readme=' + readme + ' args=' + process.argv.slice(2).join(','));"];
    writeFileSync(join(repo, 'agent.mjs'), `${script.join('\n')}\n`);
    writeFileSync(join(repo, 'README'), 'from the repo\n');
    const git = (...args: string[]) => execFileSync('git', args, { cwd: repo, env: { PATH: '/usr/bin:/bin', HOME: dataDir, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } });
    git('init', '-q');
    git('add', '.');
    git('commit', '-qm', 'init');
    const d = desired(['agent.mjs', 'one', 'two'], {});
    d.spec = { ...d.spec, harness: 'script', task: 'count', repository: `file://${repo}` };
    await supervisor.command('create', d);
    await until(() => phases(d.agentId).includes('stopped'));
    expect(phases(d.agentId)).toEqual(['provisioning', 'cloning', 'starting', 'running', 'stopped']);
    expect(await runtime.tail(d.agentId, 5)).toBe('task=count readme=from the repo args=one,two');
    expect(reports.at(-1)).toMatchObject({ exitCode: 0 });
  });

  it('a clone that fails ends in error with git\'s message, and nothing runs', async () => {
    const { supervisor, phases, reports, dataDir, workspace } = node();
    const d = desired(['sh', '-c', 'touch ran']);
    d.spec = { ...d.spec, repository: join(dataDir, 'no-such-repo') };
    await supervisor.command('create', d);
    await until(() => phases(d.agentId).includes('error'));
    expect(phases(d.agentId)).toEqual(['provisioning', 'cloning', 'error']);
    expect(reports.at(-1)?.detail).toMatch(/^git clone failed: .*does not exist/);
    expect(existsSync(join(workspace(d.agentId), 'ran'))).toBe(false);
  });

  it('starts a claude-code agent with its task and hook settings, and resumes it with --continue after a suspend', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'graft-supervisor-'));
    // A stand-in `claude` that records how it was started, then waits like a session would.
    const bin = join(dataDir, 'fake-bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'claude'), '#!/bin/sh\nprintf "%s\\n" "$*" >> argv.log\nexec sleep 30\n');
    chmodSync(join(bin, 'claude'), 0o755);
    const { supervisor, workspace } = node(dataDir, 10, `${bin}:/usr/bin:/bin`);
    const d = desired([]);
    d.spec = { ...d.spec, harness: 'claude-code', command: null, task: 'fix the flaky test' };
    await supervisor.command('create', d);
    const argvLog = join(workspace(d.agentId), 'argv.log');
    await until(() => existsSync(argvLog) && readFileSync(argvLog, 'utf8').includes('\n'));
    expect(readFileSync(argvLog, 'utf8')).toBe('-p --output-format stream-json --verbose -- fix the flaky test\n');
    const settings = JSON.parse(readFileSync(join(workspace(d.agentId), '.claude', 'settings.json'), 'utf8')) as { hooks: Record<string, Array<{ hooks: Array<{ command: string }> }>> };
    expect(settings.hooks.Stop?.[0]?.hooks[0]?.command).toBe('graft-agent hook Stop --harness claude-code');
    expect(await supervisor.command('suspend', { ...d, generation: 2, desiredState: 'suspended' })).toMatchObject({ ok: true, agent: { phase: 'suspended' } });
    expect(await supervisor.command('start', { ...d, generation: 3, resume: true })).toMatchObject({ ok: true, agent: { phase: 'running' } });
    await until(() => readFileSync(argvLog, 'utf8').split('\n').length === 3);
    expect(readFileSync(argvLog, 'utf8').split('\n')[1]).toBe('-p --output-format stream-json --verbose --continue -- fix the flaky test');
  });

  it('an agent CLI harness without a task ends in error saying so', async () => {
    const { supervisor } = node();
    const d = desired([]);
    d.spec = { ...d.spec, harness: 'codex', command: null, task: null };
    const out = await supervisor.command('create', d);
    expect(out.ok && out.agent).toMatchObject({ phase: 'error' });
    expect(out.ok && out.agent?.detail).toContain('needs a task');
  });
});
