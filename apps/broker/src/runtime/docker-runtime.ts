import { createHash, randomUUID } from 'node:crypto';
import { appendFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { createLogger, type Logger } from '@graft/log';
import type { AgentSpec } from '@graft/protocol';
import Docker from 'dockerode';
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
import { DockerFrameDecoder } from './docker-frames.js';
import { appendInboxMessage, OUTPUT_FILES, outputFilesIn, tailOutput } from './tail-file.js';
import { refuseUnsupported } from './unsupported-spec.js';

/** Options of {@link DockerRuntime}. */
export interface DockerRuntimeOptions {
  /** The engine's API (Docker or Podman): `{ socketPath }` or `{ host, port }` as config.ts parses DOCKER_HOST, or a client to share. */
  engine: { socketPath: string } | { host: string; port: number } | Docker;
  /** Host directory of the agents' workspaces and inboxes; the engine bind-mounts from it, so it must be on the engine's host. */
  rootDir: string;
  /** Image of agents whose spec names none; it must already be on the engine (the runtime never pulls). */
  defaultImage: string;
  /**
   * Value of the `graft.broker` label on every container (the broker's id): the runtime lists, adopts
   * and reports only containers carrying it, so brokers sharing one engine never touch each other's agents.
   */
  brokerLabel: string;
  /** Environment every agent starts from, over the image's own (so it should hold only what makes sense inside the image). */
  baseEnv?: Record<string, string>;
  /** The broker's `graft-agent` and relay socket, bind-mounted read-only into every container. */
  tools?: AgentTools;
  log?: Logger;
  /** Grace between SIGTERM and SIGKILL when `remove` finds the agent running. */
  removeGraceMs?: number;
  /** How often running containers are checked for an end the events stream did not deliver. */
  reconcileIntervalMs?: number;
  /** Runs the engine's init (catatonit, tini) as PID 1, so the agent gets SIGTERM and zombies are reaped. */
  init?: boolean;
}

/** Where an agent finds its things inside its container. */
export const CONTAINER_PATHS = {
  workspace: '/workspace',
  inbox: '/graft/inbox.jsonl',
  stdout: '/graft/stdout.log',
  stderr: '/graft/stderr.log',
  bin: '/graft/bin',
  run: '/graft/run',
} as const;

/** Labels on every agent container. */
export const DOCKER_LABELS = {
  agentId: 'graft.agent-id',
  generation: 'graft.generation',
  broker: 'graft.broker',
} as const;

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const DEFAULT_EXEC_TIMEOUT_MS = 60_000;
const MAX_EXEC_OUTPUT_BYTES = 1024 * 1024;
const KILL_WAIT_MS = 5_000;
const GONE_POLL_MS = 10;
const EXEC_SETTLE_MS = 2_000;
const RECONNECT_MS = 1_000;
/** How many ended runs are remembered so a late or repeated `die` event is not reported twice. */
const SETTLED_MEMORY = 10_000;
const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/**
 * Wraps every exec: prints its pid on stderr (stripped from the output), then becomes the command.
 * The engine starts an exec as the leader of its own process group, so a timeout can kill the
 * command with everything it started (the API has no way to kill an exec).
 */
const EXEC_WRAPPER = 'echo "$$" >&2; exec "$@"';
const EXEC_KILL = 'kill -9 -"$1" 2>/dev/null || kill -9 "$1"';
/**
 * The shell of a terminal: prints its pid as the first line (stripped from the output, so close() can
 * hang it up: closing the API connection alone may leave an engine's exec running), then becomes an
 * interactive bash where the image has one, else sh.
 */
const TERMINAL_WRAPPER = 'echo "$$"; if command -v bash >/dev/null 2>&1; then exec bash -i; else exec sh -i; fi';
/** Hangs up a terminal's shell and its session (HUP, as a closed terminal would). */
const TERMINAL_HANGUP = 'kill -HUP -"$1" 2>/dev/null || kill -HUP "$1"';
/**
 * The entrypoint of every agent container: runs the agent with stdout and stderr appended to a file
 * each that the broker tails, rather than the engine's log: Podman's `tail` mangles lines written in
 * pieces, the files cost tail() no API call and need no log rotation on the engine, and every runtime
 * hands the log shipper the same two files.
 */
const RUN_WRAPPER = `exec "$@" >>${CONTAINER_PATHS.stdout} 2>>${CONTAINER_PATHS.stderr}`;

const SIGNAL_NAMES = new Map<number, string>();
for (const [name, num] of Object.entries(osConstants.signals)) {
  if (!SIGNAL_NAMES.has(num)) SIGNAL_NAMES.set(num, name);
}

/** HTTP status of a failed engine call (dockerode sets `statusCode`). */
function statusOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && 'statusCode' in err && typeof err.statusCode === 'number' ? err.statusCode : undefined;
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/** How a container ended; statuses above 128 are "killed by signal N" (from the init or the shell), as in the process runtime. */
function exitOf(code: number | null, oomKilled: boolean): { exitCode: number | null; signal: string | null } {
  if (oomKilled) return { exitCode: null, signal: 'SIGKILL' };
  if (code === null || code < 0) return { exitCode: null, signal: null };
  const signal = code > 128 ? SIGNAL_NAMES.get(code - 128) : undefined;
  return signal ? { exitCode: null, signal } : { exitCode: code, signal: null };
}

/** An engine timestamp as ISO; engines answer `0001-01-01T00:00:00Z` for "never". */
function isoTime(value: string | undefined): string {
  const ms = value === undefined ? Number.NaN : Date.parse(value);
  return Number.isNaN(ms) || ms <= 0 ? new Date().toISOString() : new Date(ms).toISOString();
}

function isRunning(state: Docker.ContainerInspectInfo['State']): boolean {
  return state.Running || state.Paused || state.Restarting;
}

/**
 * Adapter: runs each agent in a container of a Docker-API engine (Docker, or Podman's compatible
 * service), one container per run (DESIGN §5). Host state lives in `<rootDir>/<agentId>/`:
 * workspace/ (bind-mounted at /workspace), inbox.jsonl (read-only at /graft/inbox.jsonl), stdout.log
 * and stderr.log (the agent's output, appended by every run, at /graft/stdout.log and /graft/stderr.log) and `stopped` (the id
 * of the container stop() ended). The rest is the engine's: containers, labelled with agent id,
 * generation and broker, outlive the broker and are re-adopted by the next instance.
 *
 * An ended container is kept until the agent's next start, prepare(fresh) or remove, so inspect()
 * reports its exit code; one that stop() ended counts as idle. Ends are reported from the engine's
 * events stream (a `die` event), backed by a periodic listing of the containers this instance saw
 * running, so each run is reported once, and only while an instance watches it.
 */
export class DockerRuntime implements AgentRuntime {
  readonly name = 'docker' as const;
  private readonly docker: Docker;
  private readonly rootDir: string;
  private readonly defaultImage: string;
  private readonly brokerLabel: string;
  private readonly namePrefix: string;
  private readonly baseEnv: Record<string, string>;
  private readonly tools: AgentTools | undefined;
  private readonly log: Logger;
  private readonly removeGraceMs: number;
  private readonly reconcileIntervalMs: number;
  private readonly init: boolean;
  /** Running containers this instance watches for their end (id → agent id). */
  private readonly watched = new Map<string, string>();
  /** Containers whose end is dealt with (reported, stopped or discarded), oldest first. */
  private readonly settled = new Set<string>();
  private listeners: Array<(exit: RuntimeExit) => void> = [];
  private watching: Promise<void> | null = null;
  private events: NodeJS.ReadableStream | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(options: DockerRuntimeOptions) {
    const engine = options.engine;
    this.docker = engine instanceof Docker ? engine : new Docker('socketPath' in engine ? { socketPath: engine.socketPath } : { host: engine.host, port: engine.port, protocol: 'http' });
    this.rootDir = resolve(options.rootDir);
    this.defaultImage = options.defaultImage;
    this.brokerLabel = options.brokerLabel;
    // Container names are unique per engine: the broker part keeps two brokers' agents of one id apart.
    this.namePrefix = `graft-${createHash('sha256').update(options.brokerLabel).digest('hex').slice(0, 12)}-`;
    this.baseEnv = options.baseEnv ?? {};
    this.tools = options.tools;
    this.log = (options.log ?? createLogger()).child({ component: 'docker-runtime' });
    this.removeGraceMs = options.removeGraceMs ?? 2_000;
    this.reconcileIntervalMs = options.reconcileIntervalMs ?? 5_000;
    this.init = options.init ?? true;
  }

  async prepare(agentId: string, _spec: AgentSpec, options: { fresh: boolean }): Promise<void> {
    const dir = this.agentDir(agentId);
    // A new agent (the common case) has no container and nothing to clear: no engine call.
    if (!(await this.isDir(dir))) {
      await mkdir(join(dir, 'workspace'), { recursive: true });
      await this.ensureFiles(dir);
      return;
    }
    if (options.fresh) {
      const info = await this.containerOf(agentId);
      if (info && isRunning(info.State)) throw new Error(`agent ${agentId} is running; stop it before preparing a fresh workspace`);
      if (info) await this.discard(info.Id);
      await Promise.all(['workspace', 'inbox.jsonl', OUTPUT_FILES.stdout, OUTPUT_FILES.stderr, 'stopped'].map((name) => rm(join(dir, name), { recursive: true, force: true })));
    }
    await mkdir(join(dir, 'workspace'), { recursive: true });
    await this.ensureFiles(dir);
  }

  async start(agentId: string, spec: AgentSpec, options: { resume: boolean; generation: number }): Promise<void> {
    refuseUnsupported(this.name, spec);
    const dir = this.agentDir(agentId);
    const image = spec.image ?? this.defaultImage;
    // Independent round trips at once: start latency is what a dispatch waits for.
    const [, existing, imageInfo, prepared] = await Promise.all([
      this.ensureWatching(),
      this.containerOf(agentId),
      this.imageOf(image),
      this.isDir(join(dir, 'workspace')),
    ]);
    if (!prepared) throw new Error(`agent ${agentId} is not prepared: ${join(dir, 'workspace')} does not exist`);
    // Idempotent: a start of a running agent (e.g. a command the hub re-sent) must not run it twice.
    if (existing && isRunning(existing.State)) {
      this.watch(existing.Id, agentId);
      return;
    }
    if (imageInfo === null) throw this.imageMissing(image);
    if (existing) await this.discard(existing.Id);
    await Promise.all([rm(join(dir, 'stopped'), { force: true }), this.ensureFiles(dir)]);

    let container: Docker.Container;
    try {
      container = await this.docker.createContainer(this.containerSpec(agentId, spec, image, imageInfo, options));
    } catch (err) {
      // Creating answers 404 only for the image (removed since it was inspected).
      if (statusOf(err) === 404) throw this.imageMissing(image);
      throw err;
    }
    this.watch(container.id, agentId);
    try {
      await container.start();
    } catch (err) {
      await this.discard(container.id).catch((cleanup: unknown) => this.log.warn('agent.discard_failed', { agentId, containerId: container.id, err: cleanup }));
      throw new Error(`agent ${agentId}: container of image ${image} did not start: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    this.log.info('agent.started', { agentId, containerId: container.id, image, generation: options.generation, resume: options.resume });
  }

  workspace(agentId: string): string {
    return join(this.agentDir(agentId), 'workspace');
  }

  async exec(agentId: string, command: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<ExecResult> {
    if (command.length === 0) throw new Error('exec needs a command');
    const info = await this.containerOf(agentId);
    if (info === null || !isRunning(info.State)) throw new Error(`agent ${agentId} is not running on this node`);
    const container = this.docker.getContainer(info.Id);
    const exec = await container.exec({
      Cmd: ['sh', '-c', EXEC_WRAPPER, 'graft-exec', ...command],
      AttachStdin: false,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      WorkingDir: CONTAINER_PATHS.workspace,
      Env: Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`),
    });
    const stream = await exec.start({ hijack: true, stdin: false });

    const chunks: Buffer[] = [];
    let size = 0;
    const keep = (data: Buffer) => {
      chunks.push(data);
      size += data.length;
      while (size > MAX_EXEC_OUTPUT_BYTES && chunks.length > 1) size -= chunks.shift()?.length ?? 0;
    };
    const decoder = new DockerFrameDecoder();
    // The wrapper's first stderr line: the command's pid (-1 if unreadable), null until it arrived.
    const wrapper: { pidText: string; pid: number | null } = { pidText: '', pid: null };
    let pidKnown: () => void = () => {};
    const pidSeen = new Promise<void>((resolve) => {
      pidKnown = resolve;
    });
    stream.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.stream !== 'stderr' || wrapper.pid !== null) {
          keep(frame.data);
          continue;
        }
        const newline = frame.data.indexOf(10);
        wrapper.pidText += frame.data.subarray(0, newline < 0 ? frame.data.length : newline).toString('latin1');
        if (newline < 0) continue;
        wrapper.pid = /^\d+$/.test(wrapper.pidText) ? Number(wrapper.pidText) : -1;
        pidKnown();
        if (newline + 1 < frame.data.length) keep(frame.data.subarray(newline + 1));
      }
    });
    const ended = new Promise<void>((resolve) => {
      stream.once('end', resolve);
      stream.once('close', resolve);
      stream.once('error', resolve);
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS);
    });
    const outcome = await Promise.race([ended.then(() => 'ended' as const), timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      await Promise.race([pidSeen, delay(1_000)]);
      const target = wrapper.pid;
      if (target !== null && target > 0) {
        await this.killExec(container, target).catch((err: unknown) => this.log.warn('agent.exec_kill_failed', { agentId, pid: target, err }));
      } else {
        this.log.warn('agent.exec_kill_failed', { agentId, reason: 'the command never reported its pid' });
      }
      stream.destroy();
      return { exitCode: null, output: Buffer.concat(chunks).toString('utf8') };
    }
    return { exitCode: await this.execExitCode(exec), output: Buffer.concat(chunks).toString('utf8') };
  }

  /**
   * An exec with a TTY (stdin, stdout and stderr attached over one hijacked connection, the output raw
   * as the terminal wrote it), in the workspace, resized through the exec resize API. Its env is the
   * container's plus `options.env`. The exec is its own session in the container: the agent never
   * notices it, and it ends with the container.
   */
  async openTerminal(agentId: string, options: TerminalOptions): Promise<Terminal> {
    const info = await this.containerOf(agentId);
    if (info === null || !isRunning(info.State)) throw new Error(`agent ${agentId} is not running on this node`);
    const container = this.docker.getContainer(info.Id);
    const exec = await container.exec({
      Cmd: ['sh', '-c', TERMINAL_WRAPPER],
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Tty: true,
      WorkingDir: CONTAINER_PATHS.workspace,
      Env: Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`),
    });
    const stream = await exec.start({ hijack: true, stdin: true, Tty: true });
    const dataListeners: Array<(data: Buffer) => void> = [];
    const exitListeners: Array<(reason: string) => void> = [];
    let exitReason: string | null = null;
    let pidText = '';
    let pid: number | null = null;
    let closed = false;
    stream.on('data', (chunk: Buffer) => {
      let data = chunk;
      if (pid === null) {
        const newline = chunk.indexOf(10);
        pidText += chunk.subarray(0, newline < 0 ? chunk.length : newline).toString('latin1');
        if (newline < 0) return;
        pid = Number.parseInt(pidText.trim(), 10) || -1;
        data = chunk.subarray(newline + 1);
        if (data.length === 0) return;
      }
      for (const l of dataListeners) l(data);
    });
    const ended = (reason: string) => {
      if (exitReason !== null) return;
      exitReason = reason;
      for (const l of exitListeners) l(reason);
    };
    stream.once('end', () => ended('shell exited'));
    stream.once('close', () => ended('shell exited'));
    stream.once('error', (err: Error) => ended(`terminal connection failed: ${err.message}`));
    // Podman answers a resize with 201 where Docker answers 200, which dockerode's exec.resize rejects.
    const resize = (cols: number, rows: number) =>
      new Promise<void>((resolve, reject) => {
        exec.modem.dial(
          { path: `/exec/${exec.id}/resize?`, method: 'POST', statusCodes: { 200: true, 201: true, 404: 'no such exec', 500: 'container not running' }, options: { h: rows, w: cols } },
          (err: unknown) => (err ? reject(err) : resolve()),
        );
      });
    // An engine may take a moment to see the exec running; the first size must be in place before the caller types.
    for (let attempt = 0; ; attempt++) {
      try {
        await resize(options.cols, options.rows);
        break;
      } catch (err) {
        if (attempt >= 20 || exitReason !== null) {
          stream.destroy();
          throw new Error(`agent ${agentId}: could not size the terminal: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
        await delay(25);
      }
    }
    let resizing: Promise<unknown> = Promise.resolve();
    // Input typed after a resize waits for it, so what it runs sees the new size.
    let pendingResizes = 0;
    const send = (data: Buffer) => {
      if (!closed && stream.writable) stream.write(data);
    };
    return {
      write: (data) => {
        if (pendingResizes === 0) send(data);
        else resizing = resizing.then(() => send(data));
      },
      resize: (cols, rows) => {
        pendingResizes++;
        resizing = resizing
          .then(() => resize(cols, rows))
          .catch((err: unknown) => this.log.debug('agent.terminal_resize_failed', { agentId, err }))
          .finally(() => {
            pendingResizes--;
          });
      },
      onData: (listener) => {
        dataListeners.push(listener);
      },
      onExit: (listener) => {
        if (exitReason !== null) listener(exitReason);
        else exitListeners.push(listener);
      },
      pause: () => stream.pause(),
      resume: () => stream.resume(),
      close: () => {
        if (closed) return;
        closed = true;
        const target = pid;
        void (async () => {
          if (target !== null && target > 0 && exitReason === null) {
            const killer = await container.exec({ Cmd: ['sh', '-c', TERMINAL_HANGUP, 'graft-terminal-hangup', String(target)], AttachStdout: true, AttachStderr: true });
            const out = await killer.start({ hijack: true, stdin: false });
            out.resume();
            await new Promise<void>((resolve) => {
              out.once('end', resolve);
              out.once('close', resolve);
              out.once('error', resolve);
            });
          }
        })()
          .catch((err: unknown) => this.log.warn('agent.terminal_hangup_failed', { agentId, err }))
          .finally(() => stream.destroy());
      },
    };
  }

  async stop(agentId: string, options: { graceMs: number }): Promise<void> {
    const info = await this.containerOf(agentId);
    if (info === null) return;
    this.settle(info.Id);
    // Recorded before signalling: whichever instance sees the container die knows it was stopped.
    const dir = this.agentDir(agentId);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'stopped'), `${info.Id}\n`);
    if (isRunning(info.State)) await this.kill(agentId, info.Id, options.graceMs);
    this.log.info('agent.stopped', { agentId, containerId: info.Id });
  }

  async remove(agentId: string): Promise<void> {
    const dir = this.agentDir(agentId);
    const info = await this.containerOf(agentId);
    if (info) {
      this.settle(info.Id);
      if (isRunning(info.State)) await this.kill(agentId, info.Id, this.removeGraceMs);
      await this.discard(info.Id);
    }
    if (await this.isDir(dir)) {
      // Renamed first so list() never sees a half-deleted agent.
      const trash = join(this.rootDir, `.trash-${agentId}-${randomUUID()}`);
      await rename(dir, trash);
      await rm(trash, { recursive: true, force: true });
    } else if (info === null) {
      return;
    }
    this.log.info('agent.removed', { agentId });
  }

  async inspect(agentId: string): Promise<RuntimeState> {
    const dir = this.agentDir(agentId);
    // Watching first: a run found running here must have its end reported.
    const [info, exists] = await Promise.all([this.containerOf(agentId), this.isDir(dir), this.ensureWatching()]);
    if (info === null) return exists ? { state: 'idle' } : { state: 'absent' };
    if (isRunning(info.State)) {
      this.watch(info.Id, agentId);
      return { state: 'running', pid: info.State.Pid > 0 ? info.State.Pid : null, startedAt: isoTime(info.State.StartedAt) };
    }
    // Created but never started (the broker died in between): nothing ran.
    if (info.State.Status === 'created' || info.State.Status === 'removing') return { state: 'idle' };
    if ((await this.stoppedContainer(agentId)) === info.Id) return { state: 'idle' };
    if (this.watched.has(info.Id)) void this.finishRun(info.Id, agentId, null);
    return { state: 'exited', ...exitOf(info.State.ExitCode, info.State.OOMKilled), finishedAt: isoTime(info.State.FinishedAt) };
  }

  async list(): Promise<string[]> {
    const [entries, containers] = await Promise.all([
      readdir(this.rootDir).catch((err: unknown) => {
        if (errnoCode(err) === 'ENOENT') return [] as string[];
        throw err;
      }),
      this.ourContainers(),
      this.ensureWatching(),
    ]);
    const ids = new Set<string>();
    for (const name of entries) {
      if (name.startsWith('.trash-')) {
        await rm(join(this.rootDir, name), { recursive: true, force: true });
        continue;
      }
      if (AGENT_ID.test(name) && (await this.isDir(join(this.rootDir, name)))) ids.add(name);
    }
    for (const c of containers) {
      const agentId = c.Labels[DOCKER_LABELS.agentId];
      if (agentId === undefined || !AGENT_ID.test(agentId)) continue;
      ids.add(agentId);
      // Adopts runs an earlier broker process started, so their end is reported to onExit.
      if (c.State === 'running' || c.State === 'paused' || c.State === 'restarting') this.watch(c.Id, agentId);
    }
    return [...ids];
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
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const events = this.events;
    this.events = null;
    if (events && 'destroy' in events && typeof events.destroy === 'function') events.destroy();
    this.watched.clear();
    this.listeners = [];
  }

  private containerSpec(
    agentId: string,
    spec: AgentSpec,
    image: string,
    imageInfo: Docker.ImageInspectInfo,
    options: { resume: boolean; generation: number },
  ): Docker.ContainerCreateOptions {
    const dir = this.agentDir(agentId);
    const env: Record<string, string> = { ...this.baseEnv, ...spec.env };
    if (this.tools) {
      const path = env.PATH ?? imageEnv(imageInfo, 'PATH') ?? DEFAULT_PATH;
      env.PATH = path === '' ? CONTAINER_PATHS.bin : `${CONTAINER_PATHS.bin}:${path}`;
      env.GRAFT_HUB_SOCKET = `${CONTAINER_PATHS.run}/hub.sock`;
      env.GRAFT_AGENT_LIB = `${CONTAINER_PATHS.bin}/${AGENT_LIB_FILE}`;
    }
    env.GRAFT_AGENT_WORKSPACE = CONTAINER_PATHS.workspace;
    env.GRAFT_INBOX = CONTAINER_PATHS.inbox;
    if (options.resume) env.GRAFT_RESUME = '1';
    else delete env.GRAFT_RESUME;
    const mounts: Docker.MountSettings[] = [
      { Type: 'bind', Source: join(dir, 'workspace'), Target: CONTAINER_PATHS.workspace, ReadOnly: false },
      { Type: 'bind', Source: join(dir, 'inbox.jsonl'), Target: CONTAINER_PATHS.inbox, ReadOnly: true },
      { Type: 'bind', Source: join(dir, OUTPUT_FILES.stdout), Target: CONTAINER_PATHS.stdout, ReadOnly: false },
      { Type: 'bind', Source: join(dir, OUTPUT_FILES.stderr), Target: CONTAINER_PATHS.stderr, ReadOnly: false },
    ];
    if (this.tools) {
      // The relay's directory, not its socket: a broker restart recreates the socket and running agents see the new one.
      mounts.push({ Type: 'bind', Source: this.tools.binDir, Target: CONTAINER_PATHS.bin, ReadOnly: true });
      mounts.push({ Type: 'bind', Source: this.tools.runDir, Target: CONTAINER_PATHS.run, ReadOnly: true });
    }
    const { memoryMb, cpus } = spec.resources;
    // What the engine would run (the image's entrypoint, then the agent's command or the image's), behind the wrapper.
    const entrypoint = imageArgv(imageInfo.Config?.Entrypoint);
    const argv = [...entrypoint, ...(spec.command !== null && spec.command.length > 0 ? spec.command : imageArgv(imageInfo.Config?.Cmd))];
    if (argv.length === 0) throw new Error(`agent ${agentId} has no command: its spec names none and image ${image} has neither ENTRYPOINT nor CMD`);
    return {
      name: this.containerName(agentId),
      Image: image,
      Entrypoint: ['sh', '-c', RUN_WRAPPER, 'graft-agent-run'],
      Cmd: argv,
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      WorkingDir: CONTAINER_PATHS.workspace,
      Labels: { [DOCKER_LABELS.agentId]: agentId, [DOCKER_LABELS.generation]: String(options.generation), [DOCKER_LABELS.broker]: this.brokerLabel },
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      Tty: false,
      OpenStdin: false,
      HostConfig: {
        Init: this.init,
        // Host network is the node's network, as for the process runtime; 'none' leaves only a loopback.
        NetworkMode: spec.network ? 'host' : 'none',
        Mounts: mounts,
        RestartPolicy: { Name: 'no' },
        ...(memoryMb !== undefined ? { Memory: memoryMb * 1024 * 1024 } : {}),
        ...(cpus !== undefined ? { NanoCpus: Math.round(cpus * 1e9) } : {}),
      },
    };
  }

  /** The files bind-mounted into the container (a file bind needs its source to exist). */
  private async ensureFiles(dir: string): Promise<void> {
    await Promise.all([appendFile(join(dir, 'inbox.jsonl'), ''), appendFile(join(dir, OUTPUT_FILES.stdout), ''), appendFile(join(dir, OUTPUT_FILES.stderr), '')]);
  }

  private imageMissing(image: string): Error {
    return new Error(`image ${image} not found on this node; build or load it there (the docker runtime never pulls images)`);
  }

  private containerName(agentId: string): string {
    if (!AGENT_ID.test(agentId)) throw new Error(`invalid agent id ${JSON.stringify(agentId)}`);
    return `${this.namePrefix}${agentId}`;
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

  /** The agent's container (by its name, so one round trip); null when there is none. */
  private async containerOf(agentId: string): Promise<Docker.ContainerInspectInfo | null> {
    try {
      return await this.docker.getContainer(this.containerName(agentId)).inspect();
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  private async imageOf(image: string): Promise<Docker.ImageInspectInfo | null> {
    try {
      return await this.docker.getImage(image).inspect();
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  private ourContainers(): Promise<Docker.ContainerInfo[]> {
    return this.docker.listContainers({ all: true, filters: JSON.stringify({ label: [`${DOCKER_LABELS.broker}=${this.brokerLabel}`] }) });
  }

  /** The container stop() ended for this agent, if any. */
  private async stoppedContainer(agentId: string): Promise<string | null> {
    try {
      return (await readFile(join(this.agentDir(agentId), 'stopped'), 'utf8')).trim();
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      throw err;
    }
  }

  /** Marks a container's end as dealt with, so neither the events stream nor reconciling reports it. */
  private settle(containerId: string): void {
    this.watched.delete(containerId);
    this.settled.delete(containerId);
    this.settled.add(containerId);
    if (this.settled.size > SETTLED_MEMORY) {
      const oldest = this.settled.values().next().value;
      if (oldest !== undefined) this.settled.delete(oldest);
    }
  }

  private watch(containerId: string, agentId: string): void {
    if (this.closed || this.settled.has(containerId)) return;
    this.watched.set(containerId, agentId);
  }

  /** Removes a container that no longer runs (its end is not reported). */
  private async discard(containerId: string): Promise<void> {
    this.settle(containerId);
    try {
      await this.docker.getContainer(containerId).remove({ force: true, v: true });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }

  private async signal(containerId: string, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    try {
      await this.docker.getContainer(containerId).kill({ signal });
    } catch (err) {
      // 404: gone; 409: not running (any more).
      const status = statusOf(err);
      if (status !== 404 && status !== 409) throw err;
    }
  }

  /** Whether the container stopped running within `ms` (polled: an engine's wait endpoint may poll slower). */
  private async stoppedWithin(containerId: string, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    for (;;) {
      let running: boolean;
      try {
        running = isRunning((await this.docker.getContainer(containerId).inspect()).State);
      } catch (err) {
        if (statusOf(err) === 404) return true;
        throw err;
      }
      if (!running) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await delay(Math.min(GONE_POLL_MS, left));
    }
  }

  /** SIGTERM, then SIGKILL once `graceMs` has passed; resolves once the container no longer runs. */
  private async kill(agentId: string, containerId: string, graceMs: number): Promise<void> {
    await this.signal(containerId, 'SIGTERM');
    if (await this.stoppedWithin(containerId, graceMs)) return;
    this.log.info('agent.kill_escalated', { agentId, containerId, graceMs });
    await this.signal(containerId, 'SIGKILL');
    if (await this.stoppedWithin(containerId, KILL_WAIT_MS)) return;
    throw new Error(`agent ${agentId}: container ${containerId} still runs ${KILL_WAIT_MS} ms after SIGKILL`);
  }

  /** Kills an exec's process group (or, if it leads none, the process) from a second exec. */
  private async killExec(container: Docker.Container, pid: number): Promise<void> {
    const killer = await container.exec({ Cmd: ['sh', '-c', EXEC_KILL, 'graft-exec-kill', String(pid)], AttachStdout: true, AttachStderr: true });
    const stream = await killer.start({ hijack: true, stdin: false });
    stream.resume();
    await new Promise<void>((resolve) => {
      stream.once('end', resolve);
      stream.once('close', resolve);
      stream.once('error', resolve);
    });
  }

  /** An exec's exit code once its output ended (an engine may record it a moment later). */
  private async execExitCode(exec: Docker.Exec): Promise<number | null> {
    const deadline = Date.now() + EXEC_SETTLE_MS;
    for (;;) {
      const info = await exec.inspect();
      if (!info.Running) return typeof info.ExitCode === 'number' ? info.ExitCode : null;
      if (Date.now() > deadline) return null;
      await delay(GONE_POLL_MS);
    }
  }

  /** Starts watching the engine's events once (again after the stream was lost); later calls share it. */
  private ensureWatching(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.watching ??= this.connect().catch((err: unknown) => {
      this.watching = null;
      throw err;
    });
    return this.watching;
  }

  private async connect(): Promise<void> {
    const filters = JSON.stringify({ type: ['container'], label: [`${DOCKER_LABELS.broker}=${this.brokerLabel}`] });
    const stream = await this.docker.getEvents({ filters });
    if (this.closed) {
      if ('destroy' in stream && typeof stream.destroy === 'function') stream.destroy();
      return;
    }
    this.events = stream;
    let pending = '';
    stream.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      for (let newline = pending.indexOf('\n'); newline >= 0; newline = pending.indexOf('\n')) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (line !== '') this.onEvent(line);
      }
    });
    let lost = false;
    const onLost = (err?: unknown) => {
      if (lost || this.closed || this.events !== stream) return;
      lost = true;
      this.events = null;
      this.watching = null;
      this.log.warn('runtime.events_lost', { err });
      // Reconnecting lists the containers again, which reports the ends the gap hid.
      setTimeout(() => void this.ensureWatching().catch((e: unknown) => this.log.warn('runtime.events_reconnect_failed', { err: e })), RECONNECT_MS).unref();
    };
    stream.once('end', () => onLost());
    stream.once('close', () => onLost());
    stream.once('error', (err: unknown) => onLost(err));
    await this.reconcile();
    this.scheduleReconcile();
  }

  private onEvent(line: string): void {
    let event: { Type?: string; Action?: string; Actor?: { ID?: string; Attributes?: Record<string, string> } };
    try {
      event = JSON.parse(line) as typeof event;
    } catch {
      return;
    }
    if (event.Type !== 'container' || event.Action !== 'die') return;
    const containerId = event.Actor?.ID;
    const attributes = event.Actor?.Attributes ?? {};
    const agentId = attributes[DOCKER_LABELS.agentId];
    if (containerId === undefined || agentId === undefined || attributes[DOCKER_LABELS.broker] !== this.brokerLabel) return;
    const code = attributes.exitCode;
    void this.finishRun(containerId, agentId, code !== undefined && /^-?\d+$/.test(code) ? Number(code) : null);
  }

  private scheduleReconcile(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.reconcile()
        .catch((err: unknown) => this.log.warn('runtime.reconcile_failed', { err }))
        .finally(() => this.scheduleReconcile());
    }, this.reconcileIntervalMs);
    this.timer.unref();
  }

  /** Watches running containers; reports watched ones that ended without an event this instance saw. */
  private async reconcile(): Promise<void> {
    const containers = await this.ourContainers();
    const present = new Set<string>();
    for (const c of containers) {
      const agentId = c.Labels[DOCKER_LABELS.agentId];
      if (agentId === undefined) continue;
      present.add(c.Id);
      if (c.State === 'running' || c.State === 'paused' || c.State === 'restarting') this.watch(c.Id, agentId);
      else if (this.watched.has(c.Id)) void this.finishRun(c.Id, agentId, null);
    }
    for (const id of [...this.watched.keys()]) if (!present.has(id)) this.watched.delete(id);
  }

  /** Handles the end of a run once: reports it unless stop() ended it or it was already dealt with. */
  private async finishRun(containerId: string, agentId: string, exitCode: number | null): Promise<void> {
    if (this.closed || this.settled.has(containerId)) return;
    this.settle(containerId);
    try {
      if ((await this.stoppedContainer(agentId)) === containerId) return;
      let code = exitCode;
      let oomKilled = false;
      if (code === null) {
        let info: Docker.ContainerInspectInfo;
        try {
          info = await this.docker.getContainer(containerId).inspect();
        } catch (err) {
          if (statusOf(err) === 404) return;
          throw err;
        }
        code = info.State.ExitCode;
        oomKilled = info.State.OOMKilled;
      }
      if (this.closed) return;
      const exit = exitOf(code, oomKilled);
      this.log.info('agent.exited', { agentId, containerId, exitCode: exit.exitCode, signal: exit.signal });
      for (const listener of this.listeners) {
        try {
          listener({ agentId, ...exit });
        } catch (err) {
          this.log.error('agent.exit_listener_failed', { agentId, err });
        }
      }
    } catch (err) {
      this.log.error('agent.exit_handling_failed', { agentId, containerId, err });
    }
  }
}

function imageArgv(value: string | string[] | null | undefined): string[] {
  if (value === null || value === undefined) return [];
  // The shell form of ENTRYPOINT/CMD, as some engines report it.
  return typeof value === 'string' ? ['/bin/sh', '-c', value] : value;
}

function imageEnv(image: Docker.ImageInspectInfo, name: string): string | undefined {
  const prefix = `${name}=`;
  return image.Config?.Env?.find((entry) => entry.startsWith(prefix))?.slice(prefix.length);
}
