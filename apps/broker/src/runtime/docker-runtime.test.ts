import { randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { createLogger } from '@graft/log';
import type { AgentSpec } from '@graft/protocol';
import Docker from 'dockerode';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import type { AgentRuntime, AgentTools, RuntimeExit, RuntimeState } from './agent-runtime.js';
import { DOCKER_LABELS, DockerRuntime, type DockerRuntimeOptions } from './docker-runtime.js';
import { type RuntimeUnderTest, runtimeContract } from './runtime-contract.js';

const socketPath = inject('dockerSocket');
const image = inject('testAgentImage');
const docker = new Docker({ socketPath });

/** Every container carrying `brokerLabel`, whatever its state. */
const labelled = (brokerLabel: string) => docker.listContainers({ all: true, filters: JSON.stringify({ label: [`${DOCKER_LABELS.broker}=${brokerLabel}`] }) });

interface DockerSubject extends RuntimeUnderTest {
  rootDir: string;
  brokerLabel: string;
  runtime: DockerRuntime;
  reopen(): Promise<DockerRuntime>;
  open(overrides?: Partial<DockerRuntimeOptions>): DockerRuntime;
}

/** A runtime on the run's Podman service, with a broker label of its own so tests running at once never see each other's containers. */
async function makeDockerRuntime(tools?: AgentTools): Promise<DockerSubject> {
  const rootDir = await mkdtemp(join(tmpdir(), 'graft-docker-runtime-'));
  const brokerLabel = `test-${randomUUID()}`;
  const logLines: string[] = [];
  const log = createLogger({ level: 'debug', sink: (line) => logLines.push(line) });
  const instances: DockerRuntime[] = [];
  const open = (overrides: Partial<DockerRuntimeOptions> = {}) => {
    const runtime = new DockerRuntime({
      engine: { socketPath },
      rootDir,
      defaultImage: image,
      brokerLabel,
      baseEnv: { SHARED: 'from-base' },
      log,
      reconcileIntervalMs: 500,
      ...(tools ? { tools } : {}),
      ...overrides,
    });
    instances.push(runtime);
    return runtime;
  };
  return {
    rootDir,
    brokerLabel,
    open,
    runtime: open(),
    reopen: async () => open(),
    cleanup: async () => {
      for (const runtime of instances) await runtime.close();
      const janitor = open({ removeGraceMs: 200 });
      for (const id of await janitor.list()) await janitor.remove(id);
      await janitor.close();
      // A container still labelled for this broker escaped stop/remove: remove it, then fail.
      const strays = await labelled(brokerLabel);
      for (const c of strays) {
        await docker
          .getContainer(c.Id)
          .kill()
          .catch(() => {});
        await docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => {});
      }
      await rm(rootDir, { recursive: true, force: true });
      expect(
        strays.map((c) => c.Names),
        'containers left after cleanup',
      ).toEqual([]);
      const errors = logLines.filter((line) => (JSON.parse(line) as { level: string }).level === 'error');
      expect(errors, 'runtime logged errors').toEqual([]);
    },
  };
}

runtimeContract('docker', makeDockerRuntime);

describe('DockerRuntime', () => {
  let subject: DockerSubject;
  let rt: DockerRuntime;
  let toolsRoot: string;
  let tools: AgentTools;
  let relay: Server;
  const others: DockerSubject[] = [];

  // graft-agent and the relay socket as the broker provides them; the relay answers so an agent can prove it got through.
  beforeAll(async () => {
    toolsRoot = await mkdtemp(join(tmpdir(), 'graft-docker-tools-'));
    await chmod(toolsRoot, 0o755);
    tools = { binDir: join(toolsRoot, 'bin'), runDir: join(toolsRoot, 'run') };
    for (const dir of [tools.binDir, tools.runDir]) await mkdir(dir, { mode: 0o755 });
    await writeFile(join(tools.binDir, 'graft-agent'), '#!/usr/bin/env node\nconsole.log("graft-agent in node " + process.version);\n', { mode: 0o755 });
    relay = createServer((socket) => socket.end('relay here\n'));
    await new Promise<void>((resolve) => relay.listen(join(tools.runDir, 'hub.sock'), resolve));
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => relay.close(() => resolve()));
    await rm(toolsRoot, { recursive: true, force: true });
  });

  beforeEach(async () => {
    subject = await makeDockerRuntime(tools);
    rt = subject.runtime;
  });

  afterEach(async () => {
    for (const other of others.splice(0)) await other.cleanup();
    await subject.cleanup();
  });

  const spec = (script: string, extra: Partial<AgentSpec> = {}): AgentSpec => ({
    projectId: randomUUID(),
    name: 'docker-agent',
    harness: 'command',
    runtime: 'docker',
    image: null,
    command: ['sh', '-c', script],
    env: {},
    task: null,
    labels: {},
    network: true,
    resources: {},
    repository: null,
      secretEnv: [],
    ...extra,
  });

  const launch = async (runtime: AgentRuntime, script: string, options: { id?: string; generation?: number; extra?: Partial<AgentSpec> } = {}) => {
    const id = options.id ?? randomUUID();
    const s = spec(script, options.extra);
    await runtime.prepare(id, s, { fresh: false });
    await runtime.start(id, s, { resume: false, generation: options.generation ?? 1 });
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

  const exited = (runtime: AgentRuntime, id: string) =>
    waitFor(
      () => runtime.inspect(id),
      (s) => s.state === 'exited',
    ) as Promise<Extract<RuntimeState, { state: 'exited' }>>;

  it('labels the container with agent id, generation and broker, and mounts the workspace at /workspace', async () => {
    const id = await launch(rt, 'pwd; echo "$GRAFT_AGENT_WORKSPACE $GRAFT_INBOX $SHARED"; sleep 30', { generation: 7 });
    const [container, ...more] = await labelled(subject.brokerLabel);
    expect(more).toEqual([]);
    expect(container?.Labels).toMatchObject({ [DOCKER_LABELS.agentId]: id, [DOCKER_LABELS.generation]: '7', [DOCKER_LABELS.broker]: subject.brokerLabel });
    expect(container?.State).toBe('running');
    expect(
      (
        await waitFor(
          () => rt.tail(id, 10),
          (t) => t.includes('\n'),
        )
      ).split('\n'),
    ).toEqual(['/workspace', '/workspace /graft/inbox.jsonl from-base']);
  });

  it('runtimes with different broker labels on one engine never see or touch each other’s agents', async () => {
    const other = await makeDockerRuntime(tools);
    others.push(other);
    const id = randomUUID();
    await launch(rt, 'echo mine; sleep 30', { id });
    await launch(other.runtime, 'echo theirs; sleep 30', { id });
    expect(await other.runtime.list()).toEqual([id]);
    expect(await rt.list()).toEqual([id]);
    await other.runtime.remove(id);
    expect(await other.runtime.inspect(id)).toEqual({ state: 'absent' });
    expect((await rt.inspect(id)).state).toBe('running');
    expect(await rt.tail(id, 5)).toBe('mine');
    expect(await labelled(other.brokerLabel)).toEqual([]);
    expect(await labelled(subject.brokerLabel)).toHaveLength(1);
  });

  it('refuses an image the engine does not have, naming it, and leaves the agent idle without a container', async () => {
    const id = randomUUID();
    const missing = `localhost/graft-no-such-image:${randomUUID().slice(0, 8)}`;
    const s = spec('true', { image: missing });
    await rt.prepare(id, s, { fresh: false });
    await expect(rt.start(id, s, { resume: false, generation: 1 })).rejects.toThrow(`image ${missing} not found on this node`);
    expect(await rt.inspect(id)).toEqual({ state: 'idle' });
    expect(await labelled(subject.brokerLabel)).toEqual([]);
  });

  it('leaves the container running while no instance exists; a reopened one adopts it without a second container', async () => {
    const id = await launch(rt, 'echo once; sleep 30');
    const [before] = await labelled(subject.brokerLabel);
    await rt.close();
    await delay(200);
    expect((await docker.getContainer(before?.Id ?? '').inspect()).State.Running).toBe(true);

    const reopened = await subject.reopen();
    await reopened.start(id, spec('echo once; sleep 30'), { resume: false, generation: 1 });
    const after = await labelled(subject.brokerLabel);
    expect(after.map((c) => c.Id)).toEqual([before?.Id]);
    expect(await reopened.tail(id, 10)).toBe('once');
  });

  it('reports a container killed from outside as ended by that signal', async () => {
    const exits: RuntimeExit[] = [];
    rt.onExit((exit) => exits.push(exit));
    const id = await launch(rt, 'sleep 30');
    const [container] = await labelled(subject.brokerLabel);
    await docker.getContainer(container?.Id ?? '').kill({ signal: 'SIGKILL' });
    await waitFor(
      async () => exits.length,
      (n) => n > 0,
    );
    expect(exits).toEqual([{ agentId: id, exitCode: null, signal: 'SIGKILL' }]);
    expect(await rt.inspect(id)).toMatchObject({ state: 'exited', exitCode: null, signal: 'SIGKILL' });
  });

  it('runs node and graft-agent inside, and an agent without network reaches the relay through its socket', async () => {
    const reach = "node -e \"require('net').connect(process.env.GRAFT_HUB_SOCKET).on('data', (d) => process.stdout.write(String(d)))\"";
    const id = await launch(rt, `graft-agent; ${reach}`, { extra: { network: false } });
    const state = await exited(rt, id);
    expect((await rt.tail(id, 10)).split('\n')).toEqual([`graft-agent in node ${process.version}`, 'relay here']);
    expect(state.exitCode).toBe(0);
  });

  it('exec() on timeout kills the command with everything it started', async () => {
    const id = await launch(rt, 'sleep 30');
    const result = await rt.exec(id, ['sh', '-c', 'sleep 31 & echo started; wait'], { timeoutMs: 300 });
    expect(result).toEqual({ exitCode: null, output: 'started\n' });
    const left = await rt.exec(id, ['sh', '-c', 'for p in /proc/[0-9]*; do cat "$p/cmdline" 2>/dev/null | tr "\\0" " "; echo; done']);
    expect(left.exitCode).toBe(0);
    expect(left.output).toContain('sleep 30');
    expect(left.output).not.toContain('sleep 31');
  });

  it('stop() keeps the ended container and the next start replaces it; output of both runs stays readable', async () => {
    const id = await launch(rt, 'echo first; sleep 30');
    await waitFor(
      () => rt.tail(id, 5),
      (t) => t === 'first',
    );
    await rt.stop(id, { graceMs: 200 });
    expect(await rt.inspect(id)).toEqual({ state: 'idle' });
    expect(await rt.tail(id, 5)).toBe('first');
    await launch(rt, 'echo second', { id });
    await exited(rt, id);
    expect(await rt.tail(id, 5)).toBe('first\nsecond');
    expect(await labelled(subject.brokerLabel)).toHaveLength(1);
  });
});
