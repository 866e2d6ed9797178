import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, readlink, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { createLogger, type Logger } from '@graft/log';
import type { AgentSpec, BrokerRuntime } from '@graft/protocol';
import {
  AGENT_LIB_FILE,
  type AgentRuntime,
  type AgentTools,
  type ExecResult,
  type RuntimeExit,
  type RuntimeState,
  type Terminal,
  type TerminalOptions,
} from './agent-runtime.js';
import { runCaptured } from './run-captured.js';
import { openScriptTerminal, type ScriptTerminalTools, TERMINAL_SHELL } from './script-terminal.js';
import { appendInboxMessage, OUTPUT_FILES, outputFilesIn, tailOutput } from './tail-file.js';
import { refuseUnsupported } from './unsupported-spec.js';

/** Options of {@link ProcessRuntime}. */
export interface ProcessRuntimeOptions {
  /** Where agent directories live; the only state of the runtime, shared by successive broker processes. */
  rootDir: string;
  /** Environment every agent starts from (main.ts passes PATH, HOME and LANG of the broker). */
  baseEnv?: Record<string, string>;
  log?: Logger;
  /** How often agents started by an earlier broker process are checked for liveness. */
  pollIntervalMs?: number;
  /** Grace between SIGTERM and SIGKILL when `remove` finds the agent running. */
  removeGraceMs?: number;
  /** The broker's `graft-agent` and relay socket; agents get the bin dir first on PATH and GRAFT_HUB_SOCKET. */
  tools?: AgentTools;
  /** Confines every agent (and exec) in a sandbox; without one agents run as plain process groups on the host. */
  sandbox?: ProcessSandbox;
  /** util-linux `script` and `stty`, which give openTerminal() its pseudo-terminal. */
  terminalTools?: ScriptTerminalTools;
}

/** A command and the environment it runs with, as ProcessRuntime built it or as a sandbox rewrote it. */
export interface SandboxCommand {
  command: string[];
  env: Record<string, string>;
}

/** What a sandbox gets to confine a command: the agent's host paths and the env ProcessRuntime built for it. */
export interface SandboxLaunch extends SandboxCommand {
  agentId: string;
  /** The variables the spec (start) or the caller (exec) set themselves, a subset of `env`. */
  ownEnv: Record<string, string>;
  /** The agent's directory on the host (`<rootDir>/<agentId>`), where a sandbox may keep state of its own. */
  agentDir: string;
  workspace: string;
  inbox: string;
}

/**
 * Extension point of {@link ProcessRuntime} for sandboxing runtimes (bwrap): ProcessRuntime keeps the
 * wrapper, the agent directory, pids, exit files and adoption, and only the command the wrapper runs
 * (and the one exec() runs) is the sandbox's. The wrapper stays outside, as the leader of the process
 * group stop() signals, so everything the sandbox runs must stay in that group.
 */
export interface ProcessSandbox {
  /** The runtime's name: what the runtime reports and whose RUNTIME_CAPABILITIES start() enforces. */
  readonly name: BrokerRuntime;
  /** The command and env the wrapper runs for an agent's run in place of the agent's own; throws when the sandbox cannot run. */
  confine(launch: SandboxLaunch & { spec: AgentSpec }): Promise<SandboxCommand>;
  /**
   * Resolves once the run whose wrapper is `wrapperPid` has the agent's command running inside the
   * sandbox, or has ended; start() waits for it, so the SIGTERM of a stop() right after start() cannot
   * fall into the sandbox's setup and miss the command.
   */
  started(wrapperPid: number): Promise<void>;
  /** The command and env exec() runs to run `launch.command` inside the running sandbox of the run whose wrapper is `wrapperPid`. */
  enter(launch: SandboxLaunch & { wrapperPid: number }): Promise<SandboxCommand>;
}

const DEFAULT_EXEC_TIMEOUT_MS = 60_000;

/**
 * Runs "$@" in a subshell (so a command named like a shell builtin, e.g. `exit` or `exec`, cannot end
 * the wrapper itself; dash execs the subshell's last command, so this costs no extra process) and
 * records its status, so the exit code survives a dead broker. The pid line lets a broker that crashed
 * between spawning and recording the pid find the run. Only builtins run here: the agent's env may
 * carry a PATH without `mv`, hence a single newline-terminated write instead of write-and-rename
 * (readers treat a file without the trailing newline as not written yet).
 */
const WRAPPER = 'd=$1; shift; echo $$ >"$d/pid"; ("$@"); s=$?; echo $s >"$d/exit"; exit $s';

const KILL_WAIT_MS = 5_000;
const GONE_POLL_MS = 10;
const PROC_SCAN_BATCH = 64;
const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** What run.json holds: one run of an agent, written before and after the spawn. */
interface RunRecord {
  runId: string;
  /** The wrapper's pid (its process group id); null between recording the run and spawning it. */
  pid: number | null;
  /** Boot id and start time of the pid, so a reused pid is never taken for the agent. */
  identity: string | null;
  startedAt: string;
  resume: boolean;
  /** The agent generation this run belongs to (its label, as containers carry `graft.generation`); absent in records of older brokers. */
  generation?: number;
  /** Set by stop() before signalling, so no instance reports the end of this run as an exit. */
  stopping: boolean;
}

/** A run this instance watches for its end. */
interface TrackedRun {
  runId: string;
  pid: number;
  identity: string | null;
  stopping: boolean;
  /** Resolves when the wrapper ends, for runs spawned by this instance; null for adopted runs (polled). */
  childExit: Promise<{ code: number | null; signal: string | null }> | null;
  /** Resolves once start() has recorded the run, so no exit is reported before start() returns. */
  ready: Promise<void>;
  finishing: Promise<void> | null;
}

type Liveness = 'alive' | 'zombie' | 'gone' | 'reused';

const SIGNAL_NAMES = new Map<number, string>();
for (const [name, num] of Object.entries(osConstants.signals)) {
  if (!SIGNAL_NAMES.has(num)) SIGNAL_NAMES.set(num, name);
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

function isRunRecord(value: unknown): value is RunRecord {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as Record<string, unknown>;
  return (
    typeof r.runId === 'string' &&
    (r.pid === null || (typeof r.pid === 'number' && Number.isInteger(r.pid) && r.pid > 0)) &&
    (r.identity === null || typeof r.identity === 'string') &&
    typeof r.startedAt === 'string' &&
    typeof r.resume === 'boolean' &&
    typeof r.stopping === 'boolean'
  );
}

/** Parses an exit file; null while it is not completely written. Statuses above 128 are the shell's "killed by signal N". */
function parseExit(text: string): { exitCode: number | null; signal: string | null } | null {
  if (!text.endsWith('\n')) return null;
  const value = text.trim();
  if (/^\d+$/.test(value)) {
    const status = Number(value);
    const signal = status > 128 ? SIGNAL_NAMES.get(status - 128) : undefined;
    return signal ? { exitCode: null, signal } : { exitCode: status, signal: null };
  }
  if (/^SIG[A-Z0-9]+$/.test(value)) return { exitCode: null, signal: value };
  if (value === 'lost') return { exitCode: null, signal: null };
  return null;
}

/** State (field 3), process group (field 5) and start time in clock ticks since boot (field 22) of a /proc/<pid>/stat line. */
function parseProcStat(text: string): { state: string; pgrp: number; startTime: string } | null {
  // comm (field 2) may contain spaces and parentheses; the fields after the last ')' are fixed.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const pgrp = fields[2];
  const startTime = fields[19];
  if (state === undefined || pgrp === undefined || startTime === undefined) return null;
  return { state, pgrp: Number(pgrp), startTime };
}

/**
 * Spawns the wrapper as the leader of a new process group and session, detached from the broker's
 * lifetime. Entirely synchronous on purpose: a short command may end, and be reaped, as soon as the
 * event loop turns, so its identity and the listeners must be taken before anything awaits.
 */
function spawnWrapper(
  args: string[],
  cwd: string,
  env: Record<string, string>,
  output: { stdout: number; stderr: number },
  identityOf: (pid: number) => string | null,
): {
  pid: number | undefined;
  identity: string | null;
  exited: Promise<{ code: number | null; signal: string | null }>;
  failed: Promise<unknown>;
} {
  const child = spawn('/bin/sh', ['-c', WRAPPER, 'graft-agent-wrapper', ...args], { cwd, env, detached: true, stdio: ['ignore', output.stdout, output.stderr] });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const failed = new Promise<unknown>((resolve) => child.once('error', resolve));
  child.unref();
  return { pid: child.pid, identity: child.pid === undefined ? null : identityOf(child.pid), exited, failed };
}

/**
 * Adapter: runs agents as plain process groups on the broker's host (DESIGN §5), or confined by a
 * {@link ProcessSandbox} when given one (BwrapRuntime). Everything lives in
 * `<rootDir>/<agentId>/` (workspace/, stdout.log, stderr.log, inbox.jsonl, run.json, pid, exit), so a broker that
 * restarts re-adopts running agents, and a shell wrapper records each exit code even while no broker
 * runs. Runs that end while an instance watches them (started by it, or found running by list/inspect)
 * are reported to onExit; a run that ended while no instance watched is reported by inspect() only.
 */
export class ProcessRuntime implements AgentRuntime {
  readonly name: BrokerRuntime;
  private readonly rootDir: string;
  private readonly baseEnv: Record<string, string>;
  private readonly log: Logger;
  private readonly pollIntervalMs: number;
  private readonly removeGraceMs: number;
  private readonly tools: AgentTools | undefined;
  private readonly sandbox: ProcessSandbox | undefined;
  private readonly terminalTools: ScriptTerminalTools | undefined;
  private readonly procfs: boolean;
  private readonly bootId: string;
  private readonly tracked = new Map<string, TrackedRun>();
  /** Agents whose directory prepare() just created: nothing of an earlier run can be there. */
  private readonly pristine = new Set<string>();
  private listeners: Array<(exit: RuntimeExit) => void> = [];
  private poller: NodeJS.Timeout | null = null;
  private groupScan: Promise<Set<number>> | null = null;
  private closed = false;

  constructor(options: ProcessRuntimeOptions) {
    this.name = options.sandbox?.name ?? 'process';
    this.rootDir = options.rootDir;
    this.baseEnv = options.baseEnv ?? {};
    this.log = (options.log ?? createLogger()).child({ component: `${this.name}-runtime` });
    this.pollIntervalMs = options.pollIntervalMs ?? 1_000;
    this.removeGraceMs = options.removeGraceMs ?? 2_000;
    this.tools = options.tools;
    this.sandbox = options.sandbox;
    this.terminalTools = options.terminalTools;
    this.procfs = existsSync('/proc/self/stat');
    this.bootId = this.procfs && existsSync('/proc/sys/kernel/random/boot_id') ? readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() : '';
  }

  async prepare(agentId: string, _spec: AgentSpec, options: { fresh: boolean }): Promise<void> {
    const dir = this.agentDir(agentId);
    // A new agent (the common case) has nothing to inspect or clear: one mkdir, and start() may skip its checks too.
    if (!(await this.isDir(dir))) {
      await mkdir(join(dir, 'workspace'), { recursive: true });
      this.pristine.add(agentId);
      return;
    }
    this.pristine.delete(agentId);
    if (options.fresh) {
      if ((await this.inspect(agentId)).state === 'running') throw new Error(`agent ${agentId} is running; stop it before preparing a fresh workspace`);
      this.tracked.delete(agentId);
      await Promise.all(
        // What a run leaves, a sandbox's too (home, inbox-state), and the inbox read position kept next to the inbox.
        ['workspace', OUTPUT_FILES.stdout, OUTPUT_FILES.stderr, 'inbox.jsonl', 'inbox.jsonl.offset', 'home', 'inbox-state', 'run.json', 'pid', 'exit'].map((name) => rm(join(dir, name), { recursive: true, force: true })),
      );
    }
    await mkdir(join(dir, 'workspace'), { recursive: true });
  }

  async start(agentId: string, spec: AgentSpec, options: { resume: boolean; generation: number }): Promise<void> {
    refuseUnsupported(this.name, spec);
    const dir = this.agentDir(agentId);
    const command = spec.command;
    if (command === null || command.length === 0) {
      throw new Error(`agent ${agentId} has no command: the ${this.name} runtime runs only harnesses that resolve to a command (harness ${spec.harness})`);
    }
    const workspace = join(dir, 'workspace');
    if (!this.pristine.delete(agentId)) {
      if (!(await this.isDir(workspace))) throw new Error(`agent ${agentId} is not prepared: ${workspace} does not exist`);
      // Idempotent: a start of a running agent (e.g. a command the hub re-sent) must not run it twice.
      if ((await this.inspect(agentId)).state === 'running') return;
      await Promise.all([rm(join(dir, 'exit'), { force: true }), rm(join(dir, 'pid'), { force: true })]);
    }
    const inbox = join(dir, 'inbox.jsonl');
    const env: Record<string, string> = { ...this.agentEnv(spec.env), GRAFT_AGENT_WORKSPACE: workspace, GRAFT_INBOX: inbox };
    if (options.resume) env.GRAFT_RESUME = '1';
    else delete env.GRAFT_RESUME;
    const launch = this.sandbox ? await this.sandbox.confine({ agentId, spec, command, env, ownEnv: spec.env, agentDir: dir, workspace, inbox }) : { command, env };

    const record: RunRecord = {
      runId: randomUUID(),
      pid: null,
      identity: null,
      startedAt: new Date().toISOString(),
      resume: options.resume,
      generation: options.generation,
      stopping: false,
    };
    // Recorded before the spawn: a broker that dies right after spawning finds the run through the pid file.
    await this.writeRun(agentId, record);

    // Each stream in a file of its own, appended by the agent itself: the broker's log shipper tails
    // both (stream-exact; across the two, order is as close as the shipper reads them).
    const [stdout, stderr] = await Promise.all([open(join(dir, OUTPUT_FILES.stdout), 'a'), open(join(dir, OUTPUT_FILES.stderr), 'a')]);
    let spawned: ReturnType<typeof spawnWrapper>;
    try {
      spawned = spawnWrapper([dir, ...launch.command], workspace, launch.env, { stdout: stdout.fd, stderr: stderr.fd }, (pid) => this.identityOfSync(pid));
    } finally {
      await Promise.all([stdout.close(), stderr.close()]);
    }
    const { pid, identity, exited, failed } = spawned;
    if (pid === undefined) {
      const err = await failed;
      await rm(join(dir, 'run.json'), { force: true });
      throw new Error(`agent ${agentId} could not be spawned: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    void failed.then((err) => this.log.error('agent.process_error', { agentId, pid, err }));
    let markReady = () => {};
    const run: TrackedRun = {
      runId: record.runId,
      pid,
      identity,
      stopping: false,
      childExit: exited,
      ready: new Promise<void>((resolve) => {
        markReady = resolve;
      }),
      finishing: null,
    };
    this.tracked.set(agentId, run);
    void exited.then(() => this.finish(agentId, run));
    try {
      await this.writeRun(agentId, { ...record, pid, identity });
    } finally {
      markReady();
    }
    if (this.sandbox) await this.sandbox.started(pid);
    this.log.info('agent.started', { agentId, runId: record.runId, pid, resume: options.resume, generation: options.generation });
  }

  workspace(agentId: string): string {
    return join(this.agentDir(agentId), 'workspace');
  }

  async exec(agentId: string, command: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<ExecResult> {
    const state = await this.inspect(agentId);
    if (state.state !== 'running') throw new Error(`agent ${agentId} is not running on this node`);
    const workspace = this.workspace(agentId);
    const inbox = join(this.agentDir(agentId), 'inbox.jsonl');
    const ownEnv = options.env ?? {};
    const env = { ...this.agentEnv(ownEnv), GRAFT_AGENT_WORKSPACE: workspace, GRAFT_INBOX: inbox };
    let run: SandboxCommand = { command, env };
    if (this.sandbox) {
      if (state.pid === null) throw new Error(`agent ${agentId} runs without a known pid; cannot enter its sandbox`);
      run = await this.sandbox.enter({ agentId, command, env, ownEnv, agentDir: this.agentDir(agentId), workspace, inbox, wrapperPid: state.pid });
    }
    return runCaptured(run.command, { cwd: workspace, env: run.env, timeoutMs: options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS });
  }

  /**
   * A shell on a pty (util-linux `script`) in the agent's workspace with the agent's env (plus
   * `options.env`); in a sandbox, entered like exec(). Its own session, outside the agent's process
   * group: stop() does not end it and closing it does not touch the agent (in a sandbox the shell
   * dies with the sandbox).
   */
  async openTerminal(agentId: string, options: TerminalOptions): Promise<Terminal> {
    const state = await this.inspect(agentId);
    if (state.state !== 'running') throw new Error(`agent ${agentId} is not running on this node`);
    const workspace = this.workspace(agentId);
    const inbox = join(this.agentDir(agentId), 'inbox.jsonl');
    const ownEnv = options.env ?? {};
    const env = { ...this.agentEnv(ownEnv), GRAFT_AGENT_WORKSPACE: workspace, GRAFT_INBOX: inbox };
    let run: SandboxCommand = { command: TERMINAL_SHELL, env };
    if (this.sandbox) {
      if (state.pid === null) throw new Error(`agent ${agentId} runs without a known pid; cannot enter its sandbox`);
      run = await this.sandbox.enter({ agentId, command: TERMINAL_SHELL, env, ownEnv, agentDir: this.agentDir(agentId), workspace, inbox, wrapperPid: state.pid });
    }
    return openScriptTerminal(run.command, { cwd: workspace, env: run.env, cols: options.cols, rows: options.rows, ...(this.terminalTools ? { tools: this.terminalTools } : {}) });
  }

  async stop(agentId: string, options: { graceMs: number }): Promise<void> {
    const dir = this.agentDir(agentId);
    const record = await this.readRun(agentId);
    if (record === null) return;
    const run = this.tracked.get(agentId);
    if (run) run.stopping = true;
    const stopping: RunRecord = { ...record, stopping: true };
    if (!record.stopping) await this.writeRun(agentId, stopping);
    const proc = await this.resolveProcess(agentId, stopping);
    if (proc) await this.killGroup(agentId, proc.pid, proc.identity, options.graceMs);
    // The wrapper of a run this instance spawned is reaped asynchronously; let its exit handling settle first.
    if (run?.childExit) await run.childExit;
    if (run?.finishing) await run.finishing;
    if (this.tracked.get(agentId) === run) this.tracked.delete(agentId);
    await Promise.all(['run.json', 'pid', 'exit'].map((name) => rm(join(dir, name), { force: true })));
    this.log.info('agent.stopped', { agentId, runId: record.runId });
  }

  async remove(agentId: string): Promise<void> {
    const dir = this.agentDir(agentId);
    this.pristine.delete(agentId);
    if (!(await this.isDir(dir))) return;
    await this.stop(agentId, { graceMs: this.removeGraceMs });
    this.tracked.delete(agentId);
    // Renamed first so list() never sees a half-deleted agent.
    const trash = join(this.rootDir, `.trash-${agentId}-${randomUUID()}`);
    await rename(dir, trash);
    await rm(trash, { recursive: true, force: true });
    this.log.info('agent.removed', { agentId });
  }

  async inspect(agentId: string): Promise<RuntimeState> {
    const dir = this.agentDir(agentId);
    if (!(await this.isDir(dir))) return { state: 'absent' };
    const record = await this.readRun(agentId);
    if (record === null) return { state: 'idle' };
    const proc = await this.resolveProcess(agentId, record);
    // Recorded but never spawned (the broker died in between): nothing ran, so nothing ended. (A wrapper
    // writes its pid file within milliseconds of the spawn, long before a restarted broker looks.)
    if (proc === null && record.pid === null && !(await this.exists(join(dir, 'pid')))) return { state: 'idle' };
    if (proc && (await this.liveness(proc.pid, proc.identity)) === 'alive') {
      this.adopt(agentId, record, proc.pid, proc.identity);
      return { state: 'running', pid: proc.pid, startedAt: record.startedAt };
    }
    const run = this.tracked.get(agentId);
    if (run && run.runId === record.runId) await this.finish(agentId, run);
    if (record.stopping) return { state: 'idle' };
    return this.exitedState(agentId, record.runId);
  }

  async list(): Promise<string[]> {
    let entries: string[];
    try {
      entries = await readdir(this.rootDir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw err;
    }
    const ids: string[] = [];
    for (const name of entries) {
      if (name.startsWith('.trash-')) {
        await rm(join(this.rootDir, name), { recursive: true, force: true });
        continue;
      }
      if (!AGENT_ID.test(name) || !(await this.isDir(join(this.rootDir, name)))) continue;
      ids.push(name);
      // Adopts runs an earlier broker process started, so their end is reported to onExit.
      await this.inspect(name);
    }
    return ids;
  }

  tail(agentId: string, lines: number): Promise<string> {
    return tailOutput(this.outputFiles(agentId), lines);
  }

  outputFiles(agentId: string): { stdout: string; stderr: string } {
    return outputFilesIn(this.agentDir(agentId));
  }

  async deliver(agentId: string, message: string): Promise<void> {
    const dir = this.agentDir(agentId);
    if (!(await this.isDir(dir))) throw new Error(`agent ${agentId} is not on this node`);
    await appendInboxMessage(dir, message);
  }

  onExit(listener: (exit: RuntimeExit) => void): void {
    this.listeners.push(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.poller) clearTimeout(this.poller);
    this.poller = null;
    this.tracked.clear();
    this.listeners = [];
  }

  /** The base env, then the agent's own, then the tools: `graft-agent` first on PATH and the relay socket. */
  private agentEnv(env: Record<string, string>): Record<string, string> {
    const merged = { ...this.baseEnv, ...env };
    if (this.tools === undefined) return merged;
    const path = merged.PATH ?? '/usr/local/bin:/usr/bin:/bin';
    return {
      ...merged,
      PATH: path === '' ? this.tools.binDir : `${this.tools.binDir}:${path}`,
      GRAFT_AGENT_LIB: join(this.tools.binDir, AGENT_LIB_FILE),
      GRAFT_HUB_SOCKET: join(this.tools.runDir, 'hub.sock'),
    };
  }

  private agentDir(agentId: string): string {
    if (!AGENT_ID.test(agentId)) throw new Error(`invalid agent id ${JSON.stringify(agentId)}`);
    return join(this.rootDir, agentId);
  }

  private async isDir(path: string): Promise<boolean> {
    try {
      return (await stat(path)).isDirectory();
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw err;
    }
  }

  private async exists(path: string): Promise<boolean> {
    try {
      await stat(path);
      return true;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw err;
    }
  }

  private async readRun(agentId: string): Promise<RunRecord | null> {
    const path = join(this.agentDir(agentId), 'run.json');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      throw err;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new Error(`${path} is not JSON`, { cause: err });
    }
    if (!isRunRecord(value)) throw new Error(`${path} is not a run record`);
    return value;
  }

  /** Atomic (write then rename), so a crash never leaves a torn record that loses the pid. */
  private async writeRun(agentId: string, record: RunRecord): Promise<void> {
    const path = join(this.agentDir(agentId), 'run.json');
    const tmp = `${path}.${randomUUID()}.tmp`;
    await writeFile(tmp, JSON.stringify(record));
    await rename(tmp, path);
  }

  /** The run's process; for a run recorded without a pid (broker died right after spawning), the wrapper's pid file. */
  private async resolveProcess(agentId: string, record: RunRecord): Promise<{ pid: number; identity: string | null } | null> {
    if (record.pid !== null) return { pid: record.pid, identity: record.identity };
    const dir = this.agentDir(agentId);
    let text: string;
    try {
      text = await readFile(join(dir, 'pid'), 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      throw err;
    }
    if (!/^\d+\n$/.test(text)) return null;
    const pid = Number(text.trim());
    let identity: string | null = null;
    if (this.procfs) {
      // No identity was recorded: accept the pid only if it still runs in this agent's workspace.
      const [cwd, workspace] = await Promise.all([readlink(`/proc/${pid}/cwd`).catch(() => null), realpath(join(dir, 'workspace')).catch(() => null)]);
      if (cwd === null || cwd !== workspace) return null;
      identity = await this.identityOf(pid);
      if (identity === null) return null;
    }
    await this.writeRun(agentId, { ...record, pid, identity });
    return { pid, identity };
  }

  private identityOfSync(pid: number): string | null {
    if (!this.procfs) return null;
    try {
      const stat = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      return stat ? `${this.bootId}:${stat.startTime}` : null;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ESRCH') return null;
      throw err;
    }
  }

  private async identityOf(pid: number): Promise<string | null> {
    const stat = await this.procStat(pid);
    return stat ? `${this.bootId}:${stat.startTime}` : null;
  }

  private async procStat(pid: number): Promise<{ state: string; pgrp: number; startTime: string } | null> {
    try {
      return parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ESRCH') return null;
      throw err;
    }
  }

  /** Whether the recorded wrapper still runs; a zombie has ended (nothing may reap it when the broker is PID 1). */
  private async liveness(pid: number, identity: string | null): Promise<Liveness> {
    if (!this.procfs) {
      try {
        process.kill(pid, 0);
        return 'alive';
      } catch (err) {
        return errnoCode(err) === 'EPERM' ? 'reused' : 'gone';
      }
    }
    const stat = await this.procStat(pid);
    if (stat === null) return 'gone';
    if (identity !== null && `${this.bootId}:${stat.startTime}` !== identity) return 'reused';
    return stat.state === 'Z' || stat.state === 'X' ? 'zombie' : 'alive';
  }

  /**
   * Whether process group `pid` is the agent's. While any member is left the kernel does not hand out
   * the number again, so a group whose leader is gone (not reused) still holds only the agent's processes.
   */
  private async groupIsOurs(pid: number, identity: string | null): Promise<boolean> {
    const leader = await this.liveness(pid, identity);
    if (leader === 'reused') return false;
    if (leader !== 'gone') return true;
    try {
      process.kill(-pid, 0);
      return true;
    } catch (err) {
      return errnoCode(err) === 'EPERM';
    }
  }

  /** Whether a member of the group still runs; zombies do not count (kill(-pgid, 0) counts them). */
  private async groupRuns(pid: number, identity: string | null): Promise<boolean> {
    try {
      process.kill(-pid, 0);
    } catch (err) {
      if (errnoCode(err) === 'ESRCH') return false;
      if (errnoCode(err) !== 'EPERM') throw err;
    }
    if (!this.procfs) return true;
    const leader = await this.liveness(pid, identity);
    if (leader === 'reused') return false;
    if (leader === 'alive') return true;
    return (await this.runningGroups()).has(pid);
  }

  /** Process groups with a member that is not a zombie; one scan of /proc at a time, shared by every concurrent stop(). */
  private runningGroups(): Promise<Set<number>> {
    this.groupScan ??= (async () => {
      try {
        const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number);
        const groups = new Set<number>();
        for (let i = 0; i < pids.length; i += PROC_SCAN_BATCH) {
          const stats = await Promise.all(pids.slice(i, i + PROC_SCAN_BATCH).map((p) => this.procStat(p)));
          for (const s of stats) if (s !== null && s.state !== 'Z' && s.state !== 'X') groups.add(s.pgrp);
        }
        return groups;
      } finally {
        this.groupScan = null;
      }
    })();
    return this.groupScan;
  }

  private signalGroup(pid: number, signal: NodeJS.Signals): void {
    try {
      process.kill(-pid, signal);
    } catch (err) {
      if (errnoCode(err) !== 'ESRCH') throw err;
    }
  }

  private async waitGroupGone(pid: number, identity: string | null, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (!(await this.groupRuns(pid, identity))) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await delay(Math.min(GONE_POLL_MS, left));
    }
  }

  private async killGroup(agentId: string, pid: number, identity: string | null, graceMs: number): Promise<void> {
    if (!(await this.groupIsOurs(pid, identity))) return;
    this.signalGroup(pid, 'SIGTERM');
    if (await this.waitGroupGone(pid, identity, graceMs)) return;
    if (!(await this.groupIsOurs(pid, identity))) return;
    this.log.info('agent.kill_escalated', { agentId, pid, graceMs });
    this.signalGroup(pid, 'SIGKILL');
    if (await this.waitGroupGone(pid, identity, KILL_WAIT_MS)) return;
    throw new Error(`agent ${agentId}: process group ${pid} still runs ${KILL_WAIT_MS} ms after SIGKILL`);
  }

  private async exitedState(agentId: string, runId: string): Promise<RuntimeState> {
    const path = join(this.agentDir(agentId), 'exit');
    let exit: ReturnType<typeof parseExit> = null;
    let finishedAt: string | null = null;
    try {
      const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
      exit = parseExit(text);
      finishedAt = info.mtime.toISOString();
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    if (exit === null) {
      // The wrapper died without recording a status (killed itself) while no instance watched it.
      await this.recordExit(agentId, 'lost');
      this.log.warn('agent.exit_code_lost', { agentId, runId });
      return { state: 'exited', exitCode: null, signal: null, finishedAt: new Date().toISOString() };
    }
    return { state: 'exited', exitCode: exit.exitCode, signal: exit.signal, finishedAt: finishedAt ?? new Date().toISOString() };
  }

  private async recordExit(agentId: string, value: string): Promise<void> {
    await writeFile(join(this.agentDir(agentId), 'exit'), `${value}\n`);
  }

  private adopt(agentId: string, record: RunRecord, pid: number, identity: string | null): void {
    if (this.closed) return;
    const current = this.tracked.get(agentId);
    if (current && current.runId === record.runId) return;
    this.tracked.set(agentId, {
      runId: record.runId,
      pid,
      identity,
      stopping: record.stopping,
      childExit: null,
      ready: Promise.resolve(),
      finishing: null,
    });
    this.log.info('agent.adopted', { agentId, runId: record.runId, pid });
    this.schedulePoll();
  }

  private schedulePoll(): void {
    if (this.poller || this.closed) return;
    this.poller = setTimeout(() => void this.poll(), this.pollIntervalMs);
    this.poller.unref();
  }

  private async poll(): Promise<void> {
    try {
      for (const [agentId, run] of [...this.tracked]) {
        if (run.childExit || run.finishing) continue;
        if ((await this.liveness(run.pid, run.identity)) !== 'alive') void this.finish(agentId, run);
      }
    } catch (err) {
      this.log.error('agent.poll_failed', { err });
    } finally {
      this.poller = null;
      if ([...this.tracked.values()].some((run) => run.childExit === null)) this.schedulePoll();
    }
  }

  /** Handles the end of a watched run once: records how it ended, kills leftovers, reports it unless it was stopped. */
  private finish(agentId: string, run: TrackedRun): Promise<void> {
    run.finishing ??= (async () => {
      try {
        await run.ready;
        const ended = run.childExit ? await run.childExit : null;
        if (run.stopping || this.closed) return;
        const record = await this.readRun(agentId);
        if (record === null || record.runId !== run.runId || record.stopping) return;
        const path = join(this.agentDir(agentId), 'exit');
        const text = await readFile(path, 'utf8').catch((err: unknown) => {
          if (errnoCode(err) === 'ENOENT') return '';
          throw err;
        });
        let exit = parseExit(text);
        if (exit === null) {
          // The wrapper itself was killed (or is gone without a word): record what is known.
          const value = ended ? (ended.signal ?? String(ended.code ?? 'lost')) : 'lost';
          await this.recordExit(agentId, value);
          exit = parseExit(`${value}\n`) ?? { exitCode: null, signal: null };
        }
        // Processes the agent left behind in its group go with it, as in a container.
        if (await this.groupIsOurs(run.pid, run.identity)) this.signalGroup(run.pid, 'SIGKILL');
        if (run.stopping || this.closed) return;
        this.log.info('agent.exited', { agentId, runId: run.runId, exitCode: exit.exitCode, signal: exit.signal });
        for (const listener of this.listeners) {
          try {
            listener({ agentId, exitCode: exit.exitCode, signal: exit.signal });
          } catch (err) {
            this.log.error('agent.exit_listener_failed', { agentId, err });
          }
        }
      } catch (err) {
        this.log.error('agent.exit_handling_failed', { agentId, runId: run.runId, err });
      } finally {
        if (this.tracked.get(agentId) === run) this.tracked.delete(agentId);
      }
    })();
    return run.finishing;
  }
}
