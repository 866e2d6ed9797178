import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { AgentSpec } from '@graft/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentRuntime, RuntimeExit, RuntimeState } from './agent-runtime.js';

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
export function runtimeContract(name: string, makeRuntime: () => Promise<RuntimeUnderTest>): void {
  describe(`AgentRuntime contract: ${name}`, () => {
    let subject: RuntimeUnderTest;
    let rt: AgentRuntime;

    beforeEach(async () => {
      subject = await makeRuntime();
      rt = subject.runtime;
    });

    afterEach(async () => {
      await subject.cleanup();
    });

    const spec = (script: string, env: Record<string, string> = {}): AgentSpec => ({
      projectId: randomUUID(),
      name: 'contract-agent',
      harness: 'command',
      runtime: rt.name,
      image: null,
      command: ['sh', '-c', script],
      env,
      task: null,
      labels: {},
    });

    const launch = async (runtime: AgentRuntime, script: string, options: { env?: Record<string, string>; resume?: boolean; id?: string } = {}) => {
      const id = options.id ?? randomUUID();
      const s = spec(script, options.env);
      await runtime.prepare(id, s, { fresh: false });
      await runtime.start(id, s, { resume: options.resume ?? false });
      return id;
    };

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
      await rt.start(id, s, { resume: false });
      await rt.start(id, s, { resume: false });
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
      await rt.start(id, spec(check), { resume: false });
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

    it('tail() returns the last lines of stdout and stderr interleaved', async () => {
      const id = await launch(rt, 'for i in 1 2 3 4 5 6 7 8 9 10; do echo "out $i"; done; echo "err 11" >&2; echo "out 12"');
      await exited(rt, id);
      expect(await outputLines(rt, id, 3)).toEqual(['out 10', 'err 11', 'out 12']);
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
  });
}
