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

/** How an agent's run ended, reported once per run to `onExit` listeners. */
export interface RuntimeExit {
  agentId: string;
  exitCode: number | null;
  signal: string | null;
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
  /** Starts the agent's process in its prepared workspace; resolves once it runs. */
  start(agentId: string, spec: AgentSpec, options: { resume: boolean }): Promise<void>;
  /** Stops the agent's process (SIGTERM, then SIGKILL after `graceMs`); resolves once it is gone. Keeps the workspace. */
  stop(agentId: string, options: { graceMs: number }): Promise<void>;
  /** Stops the agent if needed and removes everything it had on the node. */
  remove(agentId: string): Promise<void>;
  /** The agent's current state on the node. */
  inspect(agentId: string): Promise<RuntimeState>;
  /** Ids of every agent this runtime holds on the node, including ones an earlier broker process started. */
  list(): Promise<string[]>;
  /** The last `lines` lines of the agent's output (stdout and stderr interleaved), for error details. */
  tail(agentId: string, lines: number): Promise<string>;
  /** Delivers a message to the agent (DESIGN §4 `message`). */
  deliver(agentId: string, message: string): Promise<void>;
  /** Registers a listener called once whenever a started agent's process ends by itself (not by `stop`/`remove`). */
  onExit(listener: (exit: RuntimeExit) => void): void;
  /** Releases watchers and timers; agents keep running (they outlive the broker process). */
  close(): Promise<void>;
}
