import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, readdir, readFile, readlink, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { createLogger } from '@graft/log';
import type { AgentSpec } from '@graft/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentRuntime, AgentTools, RuntimeExit } from './agent-runtime.js';
import { ProcessRuntime } from './process-runtime.js';
import { type RuntimeUnderTest, runtimeContract } from './runtime-contract.js';

const BASE_ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin', SHARED: 'from-base' };

/** Pids of live processes whose cwd lies under `rootDir` (zombies have no cwd, so they do not count). */
async function agentProcesses(rootDir: string): Promise<number[]> {
  const root = `${await realpath(rootDir)}/`;
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cwd = await readlink(`/proc/${name}/cwd`).catch(() => null);
    if (cwd?.startsWith(root)) pids.push(Number(name));
  }
  return pids;
}

interface ProcessSubject extends RuntimeUnderTest {
  rootDir: string;
  runtime: ProcessRuntime;
  reopen(): Promise<ProcessRuntime>;
  logLines: string[];
}

async function makeProcessRuntime(tools?: AgentTools): Promise<ProcessSubject> {
  const rootDir = await mkdtemp(join(tmpdir(), 'graft-process-runtime-'));
  const logLines: string[] = [];
  const log = createLogger({ level: 'debug', sink: (line) => logLines.push(line) });
  const instances: ProcessRuntime[] = [];
  const open = (removeGraceMs?: number) => {
    const runtime = new ProcessRuntime({ rootDir, baseEnv: BASE_ENV, log, pollIntervalMs: 50, removeGraceMs, ...(tools ? { tools } : {}) });
    instances.push(runtime);
    return runtime;
  };
  return {
    rootDir,
    logLines,
    runtime: open(),
    reopen: async () => open(),
    cleanup: async () => {
      for (const runtime of instances) await runtime.close();
      const janitor = open(200);
      for (const id of await janitor.list()) await janitor.remove(id);
      await janitor.close();
      // Anything still running in an agent workspace escaped stop/remove: kill it, then fail.
      const strays = await agentProcesses(rootDir);
      for (const pid of strays) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {}
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
      await rm(rootDir, { recursive: true, force: true });
      expect(strays, 'stray agent processes after cleanup').toEqual([]);
      const errors = logLines.filter((line) => (JSON.parse(line) as { level: string }).level === 'error');
      expect(errors, 'runtime logged errors').toEqual([]);
    },
  };
}

runtimeContract('process', makeProcessRuntime);

describe('ProcessRuntime', () => {
  let subject: ProcessSubject;
  let rt: ProcessRuntime;
  const extra: ChildProcess[] = [];

  beforeEach(async () => {
    subject = await makeProcessRuntime();
    rt = subject.runtime;
  });

  afterEach(async () => {
    for (const child of extra.splice(0)) child.kill('SIGKILL');
    await subject.cleanup();
  });

  const spec = (command: string[] | null, env: Record<string, string> = {}): AgentSpec => ({
    projectId: randomUUID(),
    name: 'process-agent',
    harness: 'command',
    runtime: 'process',
    image: null,
    command,
    env,
    task: null,
    labels: {},
    network: true,
    resources: {},
    repository: null,
      secretEnv: [],
  });

  const launch = async (runtime: AgentRuntime, script: string, env: Record<string, string> = {}) => {
    const id = randomUUID();
    await runtime.prepare(id, spec(['sh', '-c', script], env), { fresh: false });
    await runtime.start(id, spec(['sh', '-c', script], env), { resume: false, generation: 1 });
    return id;
  };

  const waitFor = async <T>(probe: () => Promise<T>, accept: (value: T) => boolean): Promise<T> => {
    const deadline = Date.now() + 4_000;
    let last = await probe();
    while (!accept(last)) {
      if (Date.now() > deadline) throw new Error(`timed out; last value: ${JSON.stringify(last)}`);
      await delay(10);
      last = await probe();
    }
    return last;
  };

  const runFile = (id: string) => join(subject.rootDir, id, 'run.json');
  const readRun = async (id: string) => JSON.parse(await readFile(runFile(id), 'utf8')) as Record<string, unknown>;

  it('runs the agent in <rootDir>/<id>/workspace with base env, spec env and the GRAFT_* paths only', async () => {
    const id = await launch(
      rt,
      'pwd; echo "$GRAFT_AGENT_WORKSPACE"; echo "$GRAFT_INBOX"; echo "$SHARED"; printenv VITEST || echo no-vitest; echo made > file',
      { SHARED: 'from-spec' },
    );
    await waitFor(
      () => rt.inspect(id),
      (s) => s.state === 'exited',
    );
    const workspace = join(subject.rootDir, id, 'workspace');
    expect((await rt.tail(id, 10)).split('\n')).toEqual([
      await realpath(workspace),
      workspace,
      join(subject.rootDir, id, 'inbox.jsonl'),
      'from-spec',
      'no-vitest',
    ]);
    expect(await readFile(join(workspace, 'file'), 'utf8')).toBe('made\n');
    expect(await readFile(join(subject.rootDir, id, 'exit'), 'utf8')).toBe('0\n');
    expect(typeof (await readRun(id)).pid).toBe('number');
  });

  it('labels each run with the generation it belongs to', async () => {
    const id = randomUUID();
    await rt.prepare(id, spec(['sleep', '30']), { fresh: false });
    await rt.start(id, spec(['sleep', '30']), { resume: false, generation: 7 });
    expect(await readRun(id)).toMatchObject({ generation: 7, resume: false });
  });

  it('refuses to start without a command, or before prepare, or with an unsafe agent id', async () => {
    const id = randomUUID();
    await rt.prepare(id, spec(null), { fresh: false });
    await expect(rt.start(id, spec(null), { resume: false, generation: 1 })).rejects.toThrow(/no command/);
    await expect(rt.start(id, spec([]), { resume: false, generation: 1 })).rejects.toThrow(/no command/);
    expect(await rt.inspect(id)).toEqual({ state: 'idle' });
    await expect(rt.start(randomUUID(), spec(['true']), { resume: false, generation: 1 })).rejects.toThrow(/not prepared/);
    await expect(rt.prepare('../escape', spec(['true']), { fresh: false })).rejects.toThrow(/invalid agent id/);
    expect(existsSync(join(subject.rootDir, '..', 'escape'))).toBe(false);
  });

  it('refuses a fresh prepare of a running agent', async () => {
    const id = await launch(rt, 'sleep 30');
    await expect(rt.prepare(id, spec(['true']), { fresh: true })).rejects.toThrow(/running/);
    expect((await rt.inspect(id)).state).toBe('running');
  });

  it('the wrapper records the exit code while no runtime instance runs; inspect reports it later', async () => {
    const id = await launch(rt, 'until [ -s "$GRAFT_INBOX" ]; do sleep 0.01; done; exit 5');
    await rt.close();
    await appendFile(join(subject.rootDir, id, 'inbox.jsonl'), '{"text":"go"}\n');
    const exitFile = join(subject.rootDir, id, 'exit');
    expect(await waitFor(() => readFile(exitFile, 'utf8').catch(() => ''), (text) => text !== '')).toBe('5\n');

    const reopened = await subject.reopen();
    const exits: RuntimeExit[] = [];
    reopened.onExit((exit) => exits.push(exit));
    expect(await reopened.inspect(id)).toMatchObject({ state: 'exited', exitCode: 5, signal: null });
    await delay(150);
    expect(exits).toEqual([]);
  });

  it('does not take a reused pid for the agent, and never signals it', async () => {
    const id = await launch(rt, 'exit 0');
    await waitFor(
      () => rt.inspect(id),
      (s) => s.state === 'exited',
    );
    // Start times have a resolution of one clock tick (10 ms); a real reuse needs the pid space to wrap.
    await delay(50);
    // An unrelated process that leads its own group now holds the number the run recorded.
    const stranger = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    extra.push(stranger);
    const pid = stranger.pid ?? 0;
    await writeFile(runFile(id), JSON.stringify({ ...(await readRun(id)), pid }));

    const reopened = await subject.reopen();
    expect(await reopened.list()).toEqual([id]);
    expect(await reopened.inspect(id)).toMatchObject({ state: 'exited', exitCode: 0 });
    await reopened.stop(id, { graceMs: 100 });
    expect(await reopened.inspect(id)).toEqual({ state: 'idle' });
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    expect(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)).not.toBe('Z');
  });

  it('reports SIGKILL when the agent is killed from outside, and kills what it left in its group', async () => {
    const exits: RuntimeExit[] = [];
    rt.onExit((exit) => exits.push(exit));
    const id = await launch(rt, 'sleep 30');
    const state = await rt.inspect(id);
    if (state.state !== 'running' || state.pid === null) throw new Error(`not running: ${JSON.stringify(state)}`);
    process.kill(state.pid, 'SIGKILL');
    await waitFor(
      async () => exits.length,
      (n) => n > 0,
    );
    expect(exits).toEqual([{ agentId: id, exitCode: null, signal: 'SIGKILL' }]);
    expect(await rt.inspect(id)).toMatchObject({ state: 'exited', exitCode: null, signal: 'SIGKILL' });
    expect(await waitFor(() => agentProcesses(subject.rootDir), (pids) => pids.length === 0)).toEqual([]);
  });

  it('reports the signal that killed the command (shell status above 128)', async () => {
    const exits: RuntimeExit[] = [];
    rt.onExit((exit) => exits.push(exit));
    const id = await launch(rt, 'kill -TERM $$');
    await waitFor(
      async () => exits.length,
      (n) => n > 0,
    );
    expect(exits).toEqual([{ agentId: id, exitCode: null, signal: 'SIGTERM' }]);
  });

  it('finds a run whose pid was never recorded (broker died right after spawning) and does not run it twice', async () => {
    const id = await launch(rt, 'echo started; sleep 30');
    // By then the wrapper has written its pid file (its first action).
    await waitFor(
      () => rt.tail(id, 10),
      (text) => text === 'started',
    );
    const before = await rt.inspect(id);
    await rt.close();
    await writeFile(runFile(id), JSON.stringify({ ...(await readRun(id)), pid: null, identity: null }));

    const reopened = await subject.reopen();
    const found = await reopened.inspect(id);
    expect(found.state).toBe('running');
    if (before.state === 'running' && found.state === 'running') expect(found.pid).toBe(before.pid);
    await reopened.start(id, spec(['sh', '-c', 'echo started; sleep 30']), { resume: false, generation: 1 });
    await delay(100);
    expect(await reopened.tail(id, 10)).toBe('started');
    await reopened.stop(id, { graceMs: 200 });
    expect(await reopened.inspect(id)).toEqual({ state: 'idle' });
    expect(await agentProcesses(subject.rootDir)).toEqual([]);
  });

  it('never reports the end of a run a crashed stop() had marked, once another instance adopts it', async () => {
    const id = await launch(rt, 'sleep 30');
    const state = await rt.inspect(id);
    if (state.state !== 'running' || state.pid === null) throw new Error(`not running: ${JSON.stringify(state)}`);
    await rt.close();
    await writeFile(runFile(id), JSON.stringify({ ...(await readRun(id)), stopping: true }));

    const reopened = await subject.reopen();
    const exits: RuntimeExit[] = [];
    reopened.onExit((exit) => exits.push(exit));
    expect(await reopened.list()).toEqual([id]);
    expect((await reopened.inspect(id)).state).toBe('running');
    process.kill(-state.pid, 'SIGKILL');
    await waitFor(
      () => reopened.inspect(id),
      (s) => s.state !== 'running',
    );
    await delay(150);
    expect(exits).toEqual([]);
    expect(await reopened.inspect(id)).toEqual({ state: 'idle' });
  });

  it('treats a run recorded but never spawned as idle', async () => {
    const id = randomUUID();
    await rt.prepare(id, spec(['true']), { fresh: false });
    const record = { runId: randomUUID(), pid: null, identity: null, startedAt: new Date().toISOString(), resume: false, stopping: false };
    await writeFile(runFile(id), JSON.stringify(record));
    expect(await rt.inspect(id)).toEqual({ state: 'idle' });
    await rt.start(id, spec(['sh', '-c', 'exit 2']), { resume: false, generation: 1 });
    expect(
      await waitFor(
        () => rt.inspect(id),
        (s) => s.state === 'exited',
      ),
    ).toMatchObject({ exitCode: 2 });
  });

  it('tail() reads complete lines from the end of a log larger than its read window', async () => {
    const id = randomUUID();
    await rt.prepare(id, spec(['true']), { fresh: false });
    const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i} ${'x'.repeat(i % 7)}`);
    await writeFile(rt.outputFiles(id).stdout, `${lines.join('\n')}\n`);
    expect((await rt.tail(id, 2)).split('\n')).toEqual(lines.slice(-2));
    const all = (await rt.tail(id, 1_000_000)).split('\n');
    expect(all.length).toBeLessThan(lines.length);
    expect(all).toEqual(lines.slice(-all.length));
  });
});
