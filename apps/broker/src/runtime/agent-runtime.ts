import type { AgentSpec, BrokerRuntime } from '@graft/protocol';

/** What a runtime knows about one agent on this node. */
export type RuntimeState =
  /** Nothing of the agent exists on the node. */
  | { state: 'absent' }
  /** The workspace exists but no process runs (never started, stopped, or suspended). */
  | { state: 'idle' }
  | { state: 'running'; pid: number | null; startedAt: string }
  /** The process ended by itself; `exitCode` is null when it died from a signal or the code was lost. */
  | { state: 'exited'; exitCode: number | null; signal: string | null; finishedAt: string };

/** What `exec` answers: the command's exit code (null when killed) and its output (stdout and stderr interleaved). */
export interface ExecResult {
  exitCode: number | null;
  output: string;
}

/**
 * What the broker hands every agent whatever its runtime (DESIGN §5): the `graft-agent` tool and
 * the hub relay socket, so an agent without network still reaches the hub. Adapters make both
 * visible inside the agent (bind mounts into sandboxes and containers) and set PATH,
 * GRAFT_AGENT_LIB and GRAFT_HUB_SOCKET to where the agent sees them.
 */
export interface AgentTools {
  /** Host directory holding the `graft-agent` executable and its library AGENT_LIB_FILE (self-contained Node scripts). */
  binDir: string;
  /** Host directory holding the relay socket `hub.sock` (a directory, so a broker restart that recreates the socket reaches running agents). */
  runDir: string;
}

/** The `@graft/agent` library bundle in `AgentTools.binDir`; agents find it through GRAFT_AGENT_LIB (its path as they see it). */
export const AGENT_LIB_FILE = 'graft-agent-lib.mjs';

/** How an agent's run ended, reported once per run to `onExit` listeners. */
export interface RuntimeExit {
  agentId: string;
  exitCode: number | null;
  signal: string | null;
}

/** What `openTerminal` is given: the terminal's size in cells and variables added to the agent's environment (TERM, the agent's env for runtimes whose exec does not inherit it). */
export interface TerminalOptions {
  cols: number;
  rows: number;
  env?: Record<string, string>;
}

/**
 * An interactive shell in a running agent's environment on a pseudo-terminal. Independent of the
 * agent's own process: ending it (or its shell exiting) never touches the agent.
 */
export interface Terminal {
  /** Input, as typed (raw bytes: `\r` is Enter, `\x03` is Ctrl-C). */
  write(data: Buffer): void;
  /** Changes the terminal's size; the shell's foreground job gets SIGWINCH. */
  resize(cols: number, rows: number): void;
  /** Output, in the order the terminal produced it (stdout and stderr are one stream on a terminal). */
  onData(listener: (data: Buffer) => void): void;
  /** Called once when the shell is gone (it exited, or `close` ended it). */
  onExit(listener: (reason: string) => void): void;
  /** Back-pressure: stops reading output until `resume` (the shell then blocks on a full terminal). */
  pause(): void;
  resume(): void;
  /** Ends the shell and everything on its terminal's session; idempotent. */
  close(): void;
}

/**
 * Port: how a broker runs agents on its node (DESIGN §5). Owned by the broker's supervisor; every
 * adapter passes `runtimeContract` (runtime-contract.ts). Agents are keyed by agent id; each
 * operation is idempotent, and an agent's operations are never called concurrently for the same
 * agent (the supervisor serialises them), while different agents may be worked on at once.
 */
export interface AgentRuntime {
  /** Which runtime this is; templates ask for one by name. */
  readonly name: BrokerRuntime;
  /**
   * Prepares the agent's workspace. `fresh` wipes what an earlier run left there (restart, or start of
   * a stopped/error agent); without it an existing workspace is kept (resume of a suspended agent).
   */
  prepare(agentId: string, spec: AgentSpec, options: { fresh: boolean }): Promise<void>;
  /**
   * Starts the agent's process in its prepared workspace; resolves once it runs. Refuses (throws) a
   * spec it cannot honour: `network: false` or `resources` beyond RUNTIME_CAPABILITIES[name].
   * `generation` labels the run, so a restarted broker knows which generation it belongs to.
   */
  start(agentId: string, spec: AgentSpec, options: { resume: boolean; generation: number }): Promise<void>;
  /** Stops the agent's process (SIGTERM, then SIGKILL after `graceMs`); resolves once it is gone. Keeps the workspace. */
  stop(agentId: string, options: { graceMs: number }): Promise<void>;
  /** Stops the agent if needed and removes everything it had on the node. */
  remove(agentId: string): Promise<void>;
  /** The agent's current state on the node. */
  inspect(agentId: string): Promise<RuntimeState>;
  /** Ids of every agent this runtime holds on the node, including ones an earlier broker process started. */
  list(): Promise<string[]>;
  /** Host path of the agent's workspace (where the broker clones the project before start). */
  workspace(agentId: string): string;
  /**
   * Runs a command inside the running agent's environment (its container or sandbox, in its
   * workspace, with `env` added); throws when the agent does not run. Killed after `timeoutMs`.
   */
  exec(agentId: string, command: string[], options?: { env?: Record<string, string>; timeoutMs?: number }): Promise<ExecResult>;
  /**
   * Opens an interactive shell on a pseudo-terminal in the running agent's environment (its container
   * or sandbox, in its workspace); throws when the agent does not run or the node cannot give it a
   * terminal. Any number may be open at once, concurrently with the agent's other operations.
   */
  openTerminal(agentId: string, options: TerminalOptions): Promise<Terminal>;
  /** Host paths of the files the agent's stdout and stderr are appended to (by the agent itself, so they outlive the broker); the log shipper tails them. */
  outputFiles(agentId: string): { stdout: string; stderr: string };
  /** The last `lines` lines of the agent's output, for error details: stdout's last lines, then stderr's. */
  tail(agentId: string, lines: number): Promise<string>;
  /** Delivers a message to the agent (DESIGN §4 `message`). */
  deliver(agentId: string, message: string): Promise<void>;
  /** Registers a listener called once whenever a started agent's process ends by itself (not by `stop`/`remove`). */
  onExit(listener: (exit: RuntimeExit) => void): void;
  /** Releases watchers and timers; agents keep running (they outlive the broker process). */
  close(): Promise<void>;
}
