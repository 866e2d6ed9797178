import type { Logger } from '@graft/log';
import type { CommandErrorCode, CommandName, DesiredAgent, ObservedAgent, Phase } from '@graft/protocol';
import type { AgentRecord, AgentRecords } from './agent-records.js';
import type { BrokerMetrics } from './broker-metrics.js';
import { cloneRepository, DEFAULT_CLONE_TIMEOUT_MS, isEmptyDir } from './git-clone.js';
import { harnessLaunch, writeLaunchFiles } from './harness/harness.js';
import type { AgentLogCapture } from './logs/log-shipper.js';
import type { AgentRuntime, RuntimeExit, Terminal } from './runtime/agent-runtime.js';

/** Phases in which an agent holds one of the broker's slots. */
const BUSY: ReadonlySet<Phase> = new Set(['provisioning', 'starting', 'running', 'stopping']);
/** Phases an agent only passes through; their records need not reach the disk (see AgentRecords.put). */
const PASSING: ReadonlySet<Phase> = new Set(['provisioning', 'starting', 'stopping']);
/** Lines of output quoted in the detail of an agent that failed. */
const TAIL_LINES = 20;
/** Longest detail the protocol carries. */
const MAX_DETAIL = 4096;

/** The outcome of a command: the agent as held afterwards, or why it was refused. */
export type CommandOutcome = { ok: true; agent: ObservedAgent | null } | { ok: false; code: CommandErrorCode; message: string };

/** The outcome of opening a terminal: the terminal, or why there is none. */
export type TerminalOutcome = { ok: true; terminal: Terminal } | { ok: false; code: CommandErrorCode; message: string };

/** TERM of attached terminals: what xterm.js and most terminal emulators understand. */
const TERMINAL_TERM = 'xterm-256color';

/** What the supervisor needs. */
export interface SupervisorDeps {
  records: AgentRecords;
  runtimes: ReadonlyMap<string, AgentRuntime>;
  maxAgents: number;
  stopGraceMs: number;
  /** Environment of the broker's own git when it clones a project (PATH, HOME). */
  gitEnv: Record<string, string>;
  /** How long a clone may take (default 10 min). */
  cloneTimeoutMs?: number;
  /** Captures and ships each run's output (the broker's LogShipper); without it output stays in the runtime's files. */
  logs?: AgentLogCapture;
  metrics: BrokerMetrics;
  log: Logger;
}

/** A refusal that ends a convergence without changing anything. */
class Refusal extends Error {
  constructor(
    readonly code: CommandErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Converges the agents on this node towards the hub's desired state (DESIGN §4): every command and
 * the desired set sent on (re)connect carry an agent's whole desired state, keyed by generation;
 * the supervisor acts on a generation once, reports every phase it passes through, and keeps
 * records on disk so a restarted broker knows what it was doing. One agent's work is strictly
 * serialised; different agents are worked on concurrently.
 */
export class AgentSupervisor {
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly listeners: Array<(agent: ObservedAgent) => void> = [];
  private readonly removedListeners: Array<(agentId: string, generation: number) => void> = [];

  constructor(private readonly deps: SupervisorDeps) {
    for (const runtime of deps.runtimes.values()) runtime.onExit((exit) => this.exited(exit));
  }

  /** Registers a listener for phase changes (the tunnel forwards them as `status`). */
  onStatus(listener: (agent: ObservedAgent) => void): void {
    this.listeners.push(listener);
  }

  /** Registers a listener for agents removed after a delete (the tunnel forwards them as `removed`). */
  onRemoved(listener: (agentId: string, generation: number) => void): void {
    this.removedListeners.push(listener);
  }

  /** The broker's capacity and how much of it is used. */
  load(): { maxAgents: number; runningAgents: number } {
    return { maxAgents: this.deps.maxAgents, runningAgents: this.busyCount() };
  }

  /**
   * After a broker restart: looks at what the runtimes really hold and corrects the records (an
   * agent may have exited, or a start may have been interrupted), so the hello's inventory is true.
   */
  async recover(): Promise<void> {
    for (const record of this.deps.records.all()) {
      await this.serial(record.agentId, async () => {
        const runtime = this.deps.runtimes.get(record.spec.runtime);
        if (!runtime) {
          this.deps.log.warn('agent.runtime_unavailable', { agentId: record.agentId, runtime: record.spec.runtime });
          return;
        }
        const state = await runtime.inspect(record.agentId);
        if (state.state === 'running') {
          // Capture continues where the spool ends.
          await this.deps.logs?.runStarting(record.agentId, logSource(record, runtime), { fresh: false });
          if (record.phase !== 'running') this.report(record, { phase: 'running', detail: null, exitCode: null });
        } else if (state.state === 'exited') {
          if (BUSY.has(record.phase)) {
            // It ended while no broker watched: capture what it wrote meanwhile, then close its log.
            await this.deps.logs?.runStarting(record.agentId, logSource(record, runtime), { fresh: false });
            await this.finish(record, runtime, state.exitCode, state.signal);
          }
        } else if (BUSY.has(record.phase) && record.desired !== 'running') {
          // Interrupted mid-stop or mid-suspend: nothing runs any more, which is what was wanted (a suspend keeps its workspace for the resume).
          const to = record.desired === 'suspended' ? 'suspended' : 'stopped';
          this.report(record, { phase: to, detail: to === 'stopped' ? 'interrupted by a broker restart' : null, exitCode: null });
        }
        // A start interrupted (wanted running) keeps its phase: it is no finished run, and the desired set sent on connect starts it again.
      });
    }
  }

  /** What this broker holds, for the hello. */
  inventory(): ObservedAgent[] {
    return this.deps.records.all().map((r) => observed(r));
  }

  /** What this broker holds, with its desired state (the local API's listing). */
  list(): Array<ObservedAgent & { desiredState: AgentRecord['desired']; name: string; projectId: string; runtime: string }> {
    return this.deps.records.all().map((r) => ({ ...observed(r), desiredState: r.desired, name: r.spec.name, projectId: r.spec.projectId, runtime: r.spec.runtime }));
  }

  /** Handles a command from the hub (or the local API). */
  async command(command: CommandName, desired: DesiredAgent, message?: string): Promise<CommandOutcome> {
    const outcome = await this.serial(desired.agentId, async (): Promise<CommandOutcome> => {
      try {
        if (command === 'message') {
          const record = this.deps.records.get(desired.agentId);
          if (!record) throw new Refusal('unknown_agent', 'this broker does not hold the agent');
          await this.runtimeOf(record).deliver(desired.agentId, message ?? '');
          return { ok: true, agent: observed(record) };
        }
        const record = await this.converge(desired);
        return { ok: true, agent: record ? observed(record) : null };
      } catch (err) {
        if (err instanceof Refusal) return { ok: false, code: err.code, message: err.message };
        this.deps.log.error('agent.command_failed', { agentId: desired.agentId, command, err });
        return { ok: false, code: 'runtime_failed', message: err instanceof Error ? err.message : String(err) };
      }
    });
    this.deps.metrics.commands.inc({ command, outcome: outcome.ok ? 'ok' : outcome.code });
    return outcome;
  }

  /**
   * Opens an interactive shell into a running agent (attach). Not serialised with the agent's
   * commands: a terminal is independent of the agent's process, and a stop ends it with the agent's
   * container or sandbox (process runtime: the shell outlives the agent's process until closed).
   * The shell gets the agent's env (what a `docker exec` inherits from the container) and TERM.
   */
  async openTerminal(agentId: string, size: { cols: number; rows: number }): Promise<TerminalOutcome> {
    const record = this.deps.records.get(agentId);
    if (!record) return { ok: false, code: 'unknown_agent', message: 'this broker does not hold the agent' };
    if (record.phase !== 'running') return { ok: false, code: 'invalid', message: `the agent is ${record.phase}, not running` };
    const runtime = this.deps.runtimes.get(record.spec.runtime);
    if (!runtime) return { ok: false, code: 'no_runtime', message: `this broker does not offer the ${record.spec.runtime} runtime` };
    try {
      const terminal = await runtime.openTerminal(agentId, { ...size, env: { ...record.spec.env, TERM: TERMINAL_TERM } });
      this.deps.log.info('agent.terminal_opened', { agentId, runtime: runtime.name });
      return { ok: true, terminal };
    } catch (err) {
      this.deps.log.warn('agent.terminal_failed', { agentId, err });
      return { ok: false, code: 'runtime_failed', message: err instanceof Error ? err.message : String(err) };
    }
  }

  /**
   * Applies the full desired set sent on (re)connect: converges every agent in it and removes every
   * agent held here that is not in it.
   */
  async reconcile(desired: readonly DesiredAgent[]): Promise<void> {
    const wanted = new Set(desired.map((d) => d.agentId));
    const held = new Set(this.deps.records.all().map((r) => r.agentId));
    for (const runtime of this.deps.runtimes.values()) for (const id of await runtime.list()) held.add(id);
    await Promise.all([
      ...desired.map((d) => this.command(d.desiredState === 'deleted' ? 'delete' : 'start', d)),
      ...[...held].filter((id) => !wanted.has(id)).map((id) => this.serial(id, () => this.removeLocal(id, null))),
    ]);
  }

  /** Runs `task` after every earlier task of the same agent. */
  private serial<T>(agentId: string, task: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(agentId) ?? Promise.resolve();
    const next = prev.then(task, task);
    const settled = next.catch(() => {});
    this.chains.set(agentId, settled);
    void settled.then(() => {
      if (this.chains.get(agentId) === settled) this.chains.delete(agentId);
    });
    return next;
  }

  /** Moves one agent towards its desired state; returns its record (null once removed). */
  private async converge(d: DesiredAgent): Promise<AgentRecord | null> {
    const record = this.deps.records.get(d.agentId);
    if (record && d.generation < record.generation) throw new Refusal('stale_generation', `generation ${d.generation} is older than ${record.generation}`);
    const newGeneration = !record || d.generation > record.generation;
    if (d.desiredState === 'deleted') {
      await this.removeLocal(d.agentId, d.generation);
      return null;
    }
    const runtime = this.deps.runtimes.get(d.spec.runtime);
    if (!runtime) throw new Refusal('no_runtime', `this broker does not offer the ${d.spec.runtime} runtime`);

    if (!record) {
      // Unknown here. If the hub already saw this generation finish, this broker lost its records: do not run it twice.
      const finished = d.observedGeneration >= d.generation && (d.observedPhase === 'stopped' || d.observedPhase === 'error');
      const fresh = this.deps.records.put({ agentId: d.agentId, generation: d.generation, desired: d.desiredState, spec: d.spec, phase: 'created', detail: null, exitCode: null, acted: false });
      if (finished || d.desiredState !== 'running') return this.report(fresh, { phase: finished ? d.observedPhase : 'stopped', detail: null, exitCode: null });
      return this.startAgent(fresh, runtime, { fresh: !d.resume, resume: d.resume });
    }

    const current: AgentRecord = this.deps.records.put({ ...record, generation: d.generation, desired: d.desiredState, spec: d.spec, acted: newGeneration ? false : record.acted });
    const state = await runtime.inspect(d.agentId);
    const running = state.state === 'running';
    switch (d.desiredState) {
      case 'stopped':
        if (running) return this.stopAgent(current, runtime, 'stopped');
        if (newGeneration && BUSY.has(current.phase)) return this.report(current, { phase: 'stopped', detail: null, exitCode: null });
        return current;
      case 'suspended':
        if (running) return this.stopAgent(current, runtime, 'suspended');
        return current;
      case 'running':
        if (!newGeneration) {
          // Same generation again (a reconnect's desired set): make sure it still runs, never start a finished run again.
          if (running) return current.phase === 'running' ? current : this.report(current, { phase: 'running', detail: null, exitCode: null });
          // The run ended and its exit is still queued behind this command: settle it now, never start it again.
          if (state.state === 'exited' && current.phase === 'running') {
            await this.finish(current, runtime, state.exitCode, state.signal);
            return this.deps.records.get(d.agentId) ?? current;
          }
          // This generation's run happened (and may have ended): never again.
          if (current.acted && !BUSY.has(current.phase)) return current;
          // A start (or restart) interrupted by a broker restart: it passes through stopped, which the hub accepts from any phase, and starts again.
          const interrupted = BUSY.has(current.phase) ? this.report(current, { phase: 'stopped', detail: 'interrupted by a broker restart', exitCode: null }) : current;
          return this.startAgent(interrupted, runtime, { fresh: !d.resume, resume: d.resume });
        }
        if (running && d.resume) return current.phase === 'running' ? current : this.report(current, { phase: 'running', detail: null, exitCode: null });
        if (running) await this.stopAgent(current, runtime, 'stopped');
        return this.startAgent(this.deps.records.get(d.agentId) ?? current, runtime, { fresh: !d.resume, resume: d.resume });
    }
  }

  private async startAgent(record: AgentRecord, runtime: AgentRuntime, options: { fresh: boolean; resume: boolean }): Promise<AgentRecord> {
    // No await between this check and the report below, which makes the agent count as busy: concurrent creates cannot overshoot.
    if (!BUSY.has(record.phase) && this.busyCount() >= this.deps.maxAgents) {
      throw new Refusal('no_capacity', `this broker runs ${this.busyCount()} of at most ${this.deps.maxAgents} agents`);
    }
    const started = process.hrtime.bigint();
    try {
      let r = this.report(record, { phase: 'provisioning', detail: null, exitCode: null });
      await runtime.prepare(r.agentId, r.spec, { fresh: options.fresh });
      const workspace = runtime.workspace(r.agentId);
      const repository = r.spec.repository;
      if (repository !== null && (await isEmptyDir(workspace))) {
        r = this.report(r, { phase: 'cloning', detail: null, exitCode: null });
        const cloned = await cloneRepository(repository, workspace, { env: this.deps.gitEnv, timeoutMs: this.deps.cloneTimeoutMs ?? DEFAULT_CLONE_TIMEOUT_MS });
        if (!cloned.ok) {
          this.deps.log.warn('agent.clone_failed', { agentId: r.agentId, repository, reason: cloned.message });
          return this.report(r, { phase: 'error', detail: `git clone failed: ${cloned.message}`.slice(0, MAX_DETAIL), exitCode: null });
        }
      }
      r = this.report(r, { phase: 'starting', detail: null, exitCode: null });
      const launch = harnessLaunch({ harness: r.spec.harness, command: r.spec.command, task: r.spec.task, resume: options.resume, workspace, agentTool: 'graft-agent' });
      await writeLaunchFiles(workspace, launch.files);
      this.deps.log.info('agent.launch', { agentId: r.agentId, generation: r.generation, harness: r.spec.harness, argv: launch.command, resume: options.resume });
      await this.deps.logs?.runStarting(r.agentId, logSource(r, runtime), { fresh: options.fresh });
      await runtime.start(r.agentId, { ...r.spec, command: launch.command, env: { ...r.spec.env, ...launch.env } }, { resume: options.resume, generation: r.generation });
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      this.deps.metrics.runtimeStart.observe({ runtime: runtime.name }, ms / 1000);
      // `ms` (prepare + start, as in the histogram) lets `pnpm bench:dispatch` split dispatch latency per agent.
      this.deps.log.info('agent.started', { agentId: r.agentId, generation: r.generation, runtime: runtime.name, resume: options.resume, ms: Math.round(ms * 1000) / 1000 });
      return this.report(r, { phase: 'running', detail: null, exitCode: null });
    } catch (err) {
      const current = this.deps.records.get(record.agentId) ?? record;
      const message = err instanceof Error ? err.message : String(err);
      this.deps.log.warn('agent.start_failed', { agentId: record.agentId, err });
      return this.report(current, { phase: 'error', detail: `could not start: ${message}`.slice(0, MAX_DETAIL), exitCode: null });
    }
  }

  private async stopAgent(record: AgentRecord, runtime: AgentRuntime, to: 'stopped' | 'suspended'): Promise<AgentRecord> {
    // Suspend goes straight from running (the phase machine has running → suspended); stop passes through stopping.
    const r = to === 'stopped' ? this.report(record, { phase: 'stopping', detail: null, exitCode: null }) : record;
    await runtime.stop(r.agentId, { graceMs: this.deps.stopGraceMs });
    this.deps.log.info(to === 'stopped' ? 'agent.stopped' : 'agent.suspended', { agentId: r.agentId, generation: r.generation });
    return this.report(r, { phase: to, detail: null, exitCode: null });
  }

  /** Removes an agent from the node; `generation` null means the hub no longer knows it (no `removed` to send). */
  private async removeLocal(agentId: string, generation: number | null): Promise<void> {
    const record = this.deps.records.get(agentId);
    for (const runtime of this.deps.runtimes.values()) {
      if (!record || record.spec.runtime === runtime.name) await runtime.remove(agentId);
    }
    this.deps.records.delete(agentId);
    this.deps.logs?.removed(agentId);
    this.deps.log.info('agent.removed', { agentId, generation });
    if (generation !== null) for (const l of this.removedListeners) l(agentId, generation);
  }

  /** A run ended by itself: stopped on exit 0, error otherwise (with the last lines of output). */
  private exited(exit: RuntimeExit): void {
    void this.serial(exit.agentId, async () => {
      const record = this.deps.records.get(exit.agentId);
      if (record?.phase !== 'running') return;
      await this.finish(record, this.runtimeOf(record), exit.exitCode, exit.signal);
    }).catch((err: unknown) => this.deps.log.error('agent.exit_failed', { agentId: exit.agentId, err }));
  }

  private async finish(record: AgentRecord, runtime: AgentRuntime, exitCode: number | null, signal: string | null): Promise<void> {
    if (exitCode === 0) {
      this.report(record, { phase: 'stopped', detail: 'exited with code 0', exitCode: 0 });
    } else {
      const why = exitCode === null ? `killed by ${signal ?? 'a signal'}` : `exit code ${exitCode}`;
      const tail = (await runtime.tail(record.agentId, TAIL_LINES).catch(() => '')).trimEnd();
      this.report(record, { phase: 'error', detail: (tail ? `${why}; last output:\n${tail}` : why).slice(0, MAX_DETAIL), exitCode });
    }
    this.deps.log.info('agent.exited', { agentId: record.agentId, exitCode, signal });
  }

  /** Records a phase change and tells the listeners. */
  private report(record: AgentRecord, change: Pick<AgentRecord, 'phase' | 'detail' | 'exitCode'>): AgentRecord {
    // The generation's action is done once its target phase is reached (a failed start counts: it is not retried).
    const reached = record.desired === 'running' ? change.phase === 'running' || change.phase === 'error' : change.phase === record.desired;
    const next = this.deps.records.put({ ...record, ...change, acted: record.acted || reached }, !PASSING.has(change.phase));
    // A run is over once it leaves the busy phases: its log closes until the next run.
    if (BUSY.has(record.phase) && !BUSY.has(change.phase)) this.deps.logs?.runEnded(record.agentId);
    for (const l of this.listeners) l(observed(next));
    return next;
  }

  private runtimeOf(record: AgentRecord): AgentRuntime {
    const runtime = this.deps.runtimes.get(record.spec.runtime);
    if (!runtime) throw new Refusal('no_runtime', `this broker does not offer the ${record.spec.runtime} runtime`);
    return runtime;
  }

  private busyCount(): number {
    let n = 0;
    for (const r of this.deps.records.all()) if (BUSY.has(r.phase)) n++;
    return n;
  }
}

function observed(r: AgentRecord): ObservedAgent {
  return { agentId: r.agentId, generation: r.generation, phase: r.phase, detail: r.detail, exitCode: r.exitCode };
}

/** What the log capture of an agent's run reads: its output files, and the project secrets to redact. */
function logSource(record: AgentRecord, runtime: AgentRuntime): { files: { stdout: string; stderr: string }; secrets: Array<{ name: string; value: string }> } {
  const secrets = record.spec.secretEnv.flatMap((name) => {
    const value = record.spec.env[name];
    return value === undefined ? [] : [{ name, value }];
  });
  return { files: runtime.outputFiles(record.agentId), secrets };
}
