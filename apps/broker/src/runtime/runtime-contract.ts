import { randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { type AgentSpec, RUNTIME_CAPABILITIES, type Resources } from '@graft/protocol';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AgentRuntime, AgentTools, RuntimeExit, RuntimeState, Terminal } from './agent-runtime.js';

/**
 * What a contract factory hands the suite: a runtime on empty node state, a way to open a second
 * instance on that same state (as a restarted broker would; the suite closes the first one before),
 * and a cleanup that stops and removes every agent, closes every instance and fails on leftovers.
 */
export interface RuntimeUnderTest {
  runtime: AgentRuntime;
  reopen(): Promise<AgentRuntime>;
  cleanup(): Promise<void>;
}

/** A shell loop that waits until something was delivered to the agent ($GRAFT_INBOX, one JSON line per message). */
const WAIT_FOR_INBOX = 'until [ -s "$GRAFT_INBOX" ]; do sleep 0.01; done';

const GRACE_MS = 200;

async function waitFor<T>(what: string, probe: () => Promise<T> | T, accept: (value: T) => boolean, timeoutMs = 4_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await probe();
  while (!accept(last)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(last)}`);
    await delay(10);
    last = await probe();
  }
  return last;
}

/**
 * The behaviour every AgentRuntime adapter must show, run against real processes: `makeRuntime` is
 * called before each test. Agents run `sh -c` scripts; the suite observes them only through the port
 * (output via tail(), files via later runs in the same workspace), so any adapter can run it.
 */
export function runtimeContract(name: string, makeRuntime: (tools: AgentTools) => Promise<RuntimeUnderTest>): void {
  describe(`AgentRuntime contract: ${name}`, () => {
    let subject: RuntimeUnderTest;
    let rt: AgentRuntime;
    let toolsRoot: string;
    let tools: AgentTools;
    let relay: Server;

    // The broker's agent tools, stood in for: a `graft-agent` that only answers, and a listening relay socket.
    beforeAll(async () => {
      toolsRoot = await mkdtemp(join(tmpdir(), 'graft-contract-tools-'));
      await chmod(toolsRoot, 0o755);
      tools = { binDir: join(toolsRoot, 'bin'), runDir: join(toolsRoot, 'run') };
      for (const dir of [tools.binDir, tools.runDir]) await mkdir(dir, { mode: 0o755 });
      await writeFile(join(tools.binDir, 'graft-agent'), '#!/bin/sh\necho "graft-agent here: $*"\n', { mode: 0o755 });
      await chmod(join(tools.binDir, 'graft-agent'), 0o755);
      await writeFile(join(tools.binDir, 'graft-agent-lib.mjs'), 'export const where = "library here";\n', { mode: 0o644 });
      relay = createServer((socket) => socket.end('relay here\n'));
      await new Promise<void>((resolve) => relay.listen(join(tools.runDir, 'hub.sock'), resolve));
      await chmod(join(tools.runDir, 'hub.sock'), 0o777);
    });

    afterAll(async () => {
      await new Promise<void>((resolve) => relay.close(() => resolve()));
      await rm(toolsRoot, { recursive: true, force: true });
    });

    beforeEach(async () => {
      subject = await makeRuntime(tools);
      rt = subject.runtime;
    });

    afterEach(async () => {
      await subject.cleanup();
    });

    const spec = (script: string, env: Record<string, string> = {}, extra: Partial<AgentSpec> = {}): AgentSpec => ({
      projectId: randomUUID(),
      name: 'contract-agent',
      harness: 'command',
      runtime: rt.name,
      image: null,
      command: ['sh', '-c', script],
      env,
      task: null,
      labels: {},
      network: true,
      resources: {},
      repository: null,
      secretEnv: [],
      ...extra,
    });

    const launch = async (
      runtime: AgentRuntime,
      script: string,
      options: { env?: Record<string, string>; resume?: boolean; id?: string; extra?: Partial<AgentSpec>; generation?: number } = {},
    ) => {
      const id = options.id ?? randomUUID();
      const s = spec(script, options.env, options.extra);
      await runtime.prepare(id, s, { fresh: false });
      await runtime.start(id, s, { resume: options.resume ?? false, generation: options.generation ?? 1 });
      return id;
    };

    const capabilities = RUNTIME_CAPABILITIES[name as keyof typeof RUNTIME_CAPABILITIES];

    const exited = (runtime: AgentRuntime, id: string) =>
      waitFor(`${id} to exit`, () => runtime.inspect(id), (s) => s.state === 'exited') as Promise<Extract<RuntimeState, { state: 'exited' }>>;

    const outputLines = async (runtime: AgentRuntime, id: string, lines = 1_000) => {
      const text = await runtime.tail(id, lines);
      return text === '' ? [] : text.trimEnd().split('\n');
    };

    it('runs the command in the prepared workspace with the spec env', async () => {
      const id = await launch(rt, 'echo "$GREETING" > made-by-agent; echo "read back: $(cat made-by-agent)"', { env: { GREETING: 'hello from env' } });
      expect((await exited(rt, id)).exitCode).toBe(0);
      expect(await outputLines(rt, id)).toEqual(['read back: hello from env']);
    });

    it.each([0, 3])('inspect reports running, then exited with exit code %i', async (code) => {
      const id = await launch(rt, `echo ready; ${WAIT_FOR_INBOX}; exit ${code}`);
      const running = await rt.inspect(id);
      expect(running.state).toBe('running');
      if (running.state === 'running') expect(Number.isNaN(Date.parse(running.startedAt))).toBe(false);
      await rt.deliver(id, 'finish');
      const state = await exited(rt, id);
      expect(state).toMatchObject({ state: 'exited', exitCode: code, signal: null });
      expect(Number.isNaN(Date.parse(state.finishedAt))).toBe(false);
    });

    it('onExit fires exactly once per run with the exit code', async () => {
      const exits: RuntimeExit[] = [];
      rt.onExit((exit) => exits.push(exit));
      const id = await launch(rt, 'exit 4');
      await waitFor('the first exit', () => exits.length, (n) => n >= 1);
      await delay(150);
      expect(exits).toEqual([{ agentId: id, exitCode: 4, signal: null }]);

      await launch(rt, 'exit 5', { id });
      await waitFor('the second exit', () => exits.length, (n) => n >= 2);
      await delay(150);
      expect(exits).toEqual([
        { agentId: id, exitCode: 4, signal: null },
        { agentId: id, exitCode: 5, signal: null },
      ]);
    });

    it('onExit does not fire for runs ended by stop() or remove()', async () => {
      const exits: RuntimeExit[] = [];
      rt.onExit((exit) => exits.push(exit));
      const stopped = await launch(rt, 'sleep 30');
      const removed = await launch(rt, 'sleep 30');
      expect((await rt.inspect(stopped)).state).toBe('running');
      expect((await rt.inspect(removed)).state).toBe('running');
      await rt.stop(stopped, { graceMs: GRACE_MS });
      await rt.remove(removed);
      await delay(200);
      expect(exits).toEqual([]);
      expect(await rt.inspect(stopped)).toEqual({ state: 'idle' });
      expect(await rt.inspect(removed)).toEqual({ state: 'absent' });
    });

    it('stop() kills a process that ignores SIGTERM once graceMs has passed', async () => {
      const id = await launch(rt, 'trap "" TERM; echo ready; while :; do echo tick; sleep 0.02; done');
      await waitFor('the agent to run', () => outputLines(rt, id), (lines) => lines.includes('tick'));
      const t0 = Date.now();
      await rt.stop(id, { graceMs: GRACE_MS });
      const elapsed = Date.now() - t0;
      expect(elapsed).toBeGreaterThanOrEqual(GRACE_MS - 10);
      expect(elapsed).toBeLessThan(1_500);
      expect(await rt.inspect(id)).toEqual({ state: 'idle' });
      const after = await rt.tail(id, 1_000);
      await delay(150);
      expect(await rt.tail(id, 1_000)).toBe(after);
    });

    it('stop() returns without waiting out graceMs when the process honours SIGTERM', async () => {
      const id = await launch(rt, 'sleep 30');
      const t0 = Date.now();
      await rt.stop(id, { graceMs: 10_000 });
      expect(Date.now() - t0).toBeLessThan(1_500);
      expect(await rt.inspect(id)).toEqual({ state: 'idle' });
    });

    it('stop() and remove() are idempotent, also for an agent that never existed', async () => {
      const id = await launch(rt, 'sleep 30');
      await rt.stop(id, { graceMs: GRACE_MS });
      await rt.stop(id, { graceMs: GRACE_MS });
      expect(await rt.inspect(id)).toEqual({ state: 'idle' });
      await rt.remove(id);
      await rt.remove(id);
      expect(await rt.inspect(id)).toEqual({ state: 'absent' });
      const unknown = randomUUID();
      await rt.stop(unknown, { graceMs: GRACE_MS });
      await rt.remove(unknown);
      expect(await rt.inspect(unknown)).toEqual({ state: 'absent' });
    });

    it('start() of a running agent does not start a second run', async () => {
      const id = randomUUID();
      const s = spec('echo started; sleep 30');
      await rt.prepare(id, s, { fresh: false });
      await rt.start(id, s, { resume: false, generation: 1 });
      await rt.start(id, s, { resume: false, generation: 1 });
      await waitFor('the agent to print', () => outputLines(rt, id), (lines) => lines.length > 0);
      await delay(150);
      expect(await outputLines(rt, id)).toEqual(['started']);
      expect((await rt.inspect(id)).state).toBe('running');
    });

    it('prepare keeps the workspace without fresh and wipes it with fresh', async () => {
      const check = 'if [ -f marker ]; then echo "marker: $(cat marker)"; else echo "marker: none"; fi';
      const id = await launch(rt, 'echo kept > marker');
      await exited(rt, id);

      await launch(rt, check, { id });
      await exited(rt, id);
      expect(await outputLines(rt, id, 1)).toEqual(['marker: kept']);

      await rt.prepare(id, spec(check), { fresh: true });
      expect(await rt.inspect(id)).toEqual({ state: 'idle' });
      await rt.start(id, spec(check), { resume: false, generation: 2 });
      await exited(rt, id);
      expect(await outputLines(rt, id, 1)).toEqual(['marker: none']);
    });

    it('remove() leaves the agent absent and out of list()', async () => {
      const id = await launch(rt, 'sleep 30');
      expect(await rt.list()).toContain(id);
      await rt.remove(id);
      expect(await rt.inspect(id)).toEqual({ state: 'absent' });
      expect(await rt.list()).not.toContain(id);
    });

    it('list() returns prepared and started agents', async () => {
      expect(await rt.list()).toEqual([]);
      const prepared = randomUUID();
      await rt.prepare(prepared, spec('true'), { fresh: false });
      expect(await rt.inspect(prepared)).toEqual({ state: 'idle' });
      const started = await launch(rt, 'sleep 30');
      expect((await rt.list()).sort()).toEqual([prepared, started].sort());
    });

    it("tail() returns the last lines of the output: stdout's, then stderr's; each stream in its own file", async () => {
      const id = await launch(rt, 'for i in 1 2 3 4 5 6 7 8 9 10; do echo "out $i"; done; echo "err 11" >&2; echo "out 12"');
      await exited(rt, id);
      expect(await outputLines(rt, id, 3)).toEqual(['out 10', 'out 12', 'err 11']);
      const files = rt.outputFiles(id);
      expect(await readFile(files.stderr, 'utf8')).toBe('err 11\n');
      expect((await readFile(files.stdout, 'utf8')).split('\n').at(-2)).toBe('out 12');
      expect(await outputLines(rt, id, 100)).toHaveLength(12);
      expect(await rt.tail(id, 0)).toBe('');
      expect(await rt.tail(randomUUID(), 5)).toBe('');
    });

    it('deliver() makes the message available to the agent as a JSON line in $GRAFT_INBOX', async () => {
      const id = await launch(rt, `${WAIT_FOR_INBOX}; cat "$GRAFT_INBOX"`);
      await rt.deliver(id, 'hello\nagent');
      await exited(rt, id);
      const lines = await outputLines(rt, id);
      expect(lines).toHaveLength(1);
      const message = JSON.parse(lines[0] ?? '') as { at: string; text: string };
      expect(message.text).toBe('hello\nagent');
      expect(Number.isNaN(Date.parse(message.at))).toBe(false);
      await expect(rt.deliver(randomUUID(), 'nobody home')).rejects.toThrow();
    });

    it('start() tells the agent whether it resumes (GRAFT_RESUME=1, absent otherwise)', async () => {
      const script = 'echo "resume=$(printenv GRAFT_RESUME || echo unset)"';
      const id = await launch(rt, script, { resume: true });
      await exited(rt, id);
      expect(await outputLines(rt, id, 1)).toEqual(['resume=1']);
      await launch(rt, script, { id, resume: false });
      await exited(rt, id);
      expect(await outputLines(rt, id, 1)).toEqual(['resume=unset']);
    });

    it('a new instance on the same state re-adopts running agents, reports their exit and stops them', async () => {
      const first: RuntimeExit[] = [];
      rt.onExit((exit) => first.push(exit));
      const ending = await launch(rt, `echo ready; ${WAIT_FOR_INBOX}; exit 7`);
      const lasting = await launch(rt, 'trap "" TERM; echo ready; while :; do sleep 0.02; done');
      const before = await rt.inspect(ending);
      expect(before.state).toBe('running');
      await rt.close();

      const reopened = await subject.reopen();
      const second: RuntimeExit[] = [];
      reopened.onExit((exit) => second.push(exit));
      expect((await reopened.list()).sort()).toEqual([ending, lasting].sort());
      const adopted = await reopened.inspect(ending);
      expect(adopted.state).toBe('running');
      if (before.state === 'running' && adopted.state === 'running') {
        expect(adopted.startedAt).toBe(before.startedAt);
        expect(adopted.pid).toBe(before.pid);
      }
      expect((await reopened.inspect(lasting)).state).toBe('running');

      await reopened.deliver(ending, 'bye');
      await waitFor('the adopted agent to exit', () => second.length, (n) => n >= 1);
      expect(second).toEqual([{ agentId: ending, exitCode: 7, signal: null }]);
      expect(await reopened.inspect(ending)).toMatchObject({ state: 'exited', exitCode: 7, signal: null });

      await reopened.stop(lasting, { graceMs: GRACE_MS });
      expect(await reopened.inspect(lasting)).toEqual({ state: 'idle' });
      await delay(150);
      expect(second).toHaveLength(1);
      expect(first).toEqual([]);
    });

    it('workspace() is the host directory the agent works in', async () => {
      const id = randomUUID();
      await rt.prepare(id, spec('true'), { fresh: false });
      await writeFile(join(rt.workspace(id), 'seeded'), 'seeded by the broker\n');
      await rt.start(id, spec('cat seeded; echo made > made'), { resume: false, generation: 1 });
      expect((await exited(rt, id)).exitCode).toBe(0);
      expect(await outputLines(rt, id)).toEqual(['seeded by the broker']);
      expect(await readFile(join(rt.workspace(id), 'made'), 'utf8')).toBe('made\n');
    });

    it('exec() runs a command in the running agent, in its workspace, with extra env, and reports its exit code', async () => {
      const id = await launch(rt, `echo inside > marker; echo ready; ${WAIT_FOR_INBOX}`);
      await waitFor('the agent to be ready', () => outputLines(rt, id), (lines) => lines.includes('ready'));
      const result = await rt.exec(id, ['sh', '-c', 'cat marker; echo "extra=$EXTRA"; echo oops >&2; exit 3'], { env: { EXTRA: 'given' } });
      expect(result.exitCode).toBe(3);
      expect(result.output.trimEnd().split('\n').sort()).toEqual(['extra=given', 'inside', 'oops']);
      expect(await outputLines(rt, id)).toEqual(['ready']);
      await rt.deliver(id, 'done');
      await exited(rt, id);
      await expect(rt.exec(id, ['true'])).rejects.toThrow();
      await expect(rt.exec(randomUUID(), ['true'])).rejects.toThrow();
    });

    it('exec() kills a command that outlives timeoutMs', async () => {
      const id = await launch(rt, 'sleep 30');
      const t0 = Date.now();
      const result = await rt.exec(id, ['sh', '-c', 'echo started; sleep 30'], { timeoutMs: 300 });
      expect(Date.now() - t0).toBeLessThan(5_000);
      expect(result.exitCode).toBeNull();
      expect(result.output).toContain('started');
    });

    it('gives every agent graft-agent on its PATH, its library in GRAFT_AGENT_LIB and the hub relay socket in GRAFT_HUB_SOCKET', async () => {
      const id = await launch(rt, 'graft-agent status thinking; if [ -S "$GRAFT_HUB_SOCKET" ]; then echo "socket: yes"; else echo "socket: no"; fi; cat "$GRAFT_AGENT_LIB"');
      expect((await exited(rt, id)).exitCode).toBe(0);
      expect(await outputLines(rt, id)).toEqual(['graft-agent here: status thinking', 'socket: yes', 'export const where = "library here";']);
    });

    /** Network interfaces the agent sees, from /proc/net/dev (no tool needed in the image). */
    const interfacesScript = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort";
    const hostInterfaces = async () =>
      (await readFile('/proc/net/dev', 'utf8'))
        .split('\n')
        .slice(2)
        .map((l) => l.split(':')[0]?.trim() ?? '')
        .filter((l) => l !== '')
        .sort();

    it('network: true gives the agent the node network', async () => {
      const id = await launch(rt, interfacesScript);
      await exited(rt, id);
      const seen = await outputLines(rt, id);
      expect(seen).toEqual(await hostInterfaces());
      expect(seen.length).toBeGreaterThan(1);
    });

    if (capabilities?.isolatesNetwork) {
      it('network: false leaves the agent only a loopback, and it still finds the relay socket', async () => {
        const id = await launch(rt, `${interfacesScript}; [ -S "$GRAFT_HUB_SOCKET" ] && echo relay`, { extra: { network: false } });
        await exited(rt, id);
        expect(await outputLines(rt, id)).toEqual(['lo', 'relay']);
      });
    } else {
      it('network: false is refused (this runtime cannot isolate the network)', async () => {
        const id = randomUUID();
        const s = spec('true', {}, { network: false });
        await rt.prepare(id, s, { fresh: false });
        await expect(rt.start(id, s, { resume: false, generation: 1 })).rejects.toThrow(/network/);
        expect((await rt.inspect(id)).state).not.toBe('running');
      });
    }

    const memoryScript =
      'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes';
    const cpuScript =
      'cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"';
    const limitCases: Array<[keyof Resources, Resources, string, (out: string[]) => void]> = [
      ['memoryMb', { memoryMb: 64 }, memoryScript, (out) => expect(out).toEqual([String(64 * 1024 * 1024)])],
      [
        'cpus',
        { cpus: 0.5 },
        cpuScript,
        (out) => {
          const [quota, period] = (out[0] ?? '').split(' ').map(Number);
          expect((quota ?? 0) / (period ?? 1)).toBeCloseTo(0.5, 3);
        },
      ],
    ];
    for (const [limit, resources, script, check] of limitCases) {
      if (capabilities?.limits.includes(limit)) {
        it(`applies resources.${limit}`, async () => {
          const id = await launch(rt, script, { extra: { resources } });
          expect((await exited(rt, id)).exitCode).toBe(0);
          check(await outputLines(rt, id));
        });
      } else {
        it(`refuses resources.${limit} (this runtime cannot apply it)`, async () => {
          const id = randomUUID();
          const s = spec('true', {}, { resources });
          await rt.prepare(id, s, { fresh: false });
          await expect(rt.start(id, s, { resume: false, generation: 1 })).rejects.toThrow(new RegExp(limit));
          expect((await rt.inspect(id)).state).not.toBe('running');
        });
      }
    }

    /** Collects a terminal's output as text, and resolves once it contains `marker`. */
    const terminalReader = (term: Terminal) => {
      let text = '';
      const waiters: Array<() => void> = [];
      term.onData((d) => {
        text += d.toString('utf8');
        for (const w of waiters.splice(0)) w();
      });
      return {
        get text() {
          return text;
        },
        until: (re: RegExp) => waitFor(`terminal output matching ${re}`, () => text, (t) => re.test(t), 10_000),
      };
    };

    it('openTerminal() gives an interactive shell on a tty in the running agent: workspace, env, size, resize', async () => {
      const id = await launch(rt, 'echo ready; sleep 30');
      await waitFor('the agent to run', () => rt.inspect(id), (st) => st.state === 'running');
      const term = await rt.openTerminal(id, { cols: 91, rows: 17, env: { TERM: 'xterm-256color', GREETING: 'from-terminal' } });
      const out = terminalReader(term);
      try {
        term.write(Buffer.from('echo "where=$(pwd) greet=$GREETING tty=$([ -t 0 ] && echo yes) size=$(stty size)"\r'));
        await out.until(/where=\S+ greet=from-terminal tty=yes size=17 91/);
        expect(out.text).toContain(`where=${rt.name === 'docker' ? '/workspace' : await realpath(rt.workspace(id))}`);
        term.resize(120, 40);
        term.write(Buffer.from('echo "now=$(stty size)"\r'));
        await out.until(/now=40 120/);
      } finally {
        term.close();
      }
      expect((await rt.inspect(id)).state).toBe('running');
    });

    it('openTerminal(): two terminals at once are independent; exit fires onExit once; close() leaves the agent running', async () => {
      const id = await launch(rt, 'sleep 30');
      await waitFor('the agent to run', () => rt.inspect(id), (st) => st.state === 'running');
      const a = await rt.openTerminal(id, { cols: 80, rows: 24, env: {} });
      const b = await rt.openTerminal(id, { cols: 80, rows: 24, env: {} });
      const outA = terminalReader(a);
      const outB = terminalReader(b);
      const exits: string[] = [];
      a.onExit((reason) => exits.push(reason));
      a.write(Buffer.from('echo "only-$((40+2))-in-a"\r'));
      await outA.until(/only-42-in-a/);
      expect(outB.text).not.toContain('only-42-in-a');
      a.write(Buffer.from('exit\r'));
      await waitFor('the first shell to exit', () => exits.length, (n) => n >= 1);
      b.write(Buffer.from('echo "b-still-$((1+1))"\r'));
      await outB.until(/b-still-2/);
      b.close();
      b.close();
      await delay(200);
      expect(exits).toHaveLength(1);
      expect((await rt.inspect(id)).state).toBe('running');
    });

    it('openTerminal() refuses an agent that does not run', async () => {
      const id = await launch(rt, 'exit 0');
      await exited(rt, id);
      await expect(rt.openTerminal(id, { cols: 80, rows: 24, env: {} })).rejects.toThrow();
      await expect(rt.openTerminal(randomUUID(), { cols: 80, rows: 24, env: {} })).rejects.toThrow();
    });
  });
}
