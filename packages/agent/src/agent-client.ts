import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { GraftClient } from '@graft/client';
import type { Activity, AgentHeartbeatResponse, AgentStatusRequest, AgentStatusResponse } from '@graft/protocol';
import { type AgentEnv, loadHubConfig } from './config.js';
import { type HookHarness, mapHookEvent } from './hook-mapping.js';
import { needsRefresh, REFRESH_WINDOW_MS, tokenExpiry } from './token-expiry.js';

/** Where and as whom an agent talks to the hub. */
export interface AgentClientOptions {
  hubUrl: string;
  agentId: string;
  /** The agent's JWT (GRAFT_AGENT_TOKEN). */
  token: string;
  /** A file shared by separate graft-agent runs: read for a newer token, written (0600) on refresh. */
  tokenFile?: string | undefined;
  /** The broker's relay socket (GRAFT_HUB_SOCKET): requests go through it, so an agent without network reaches the hub. */
  hubSocket?: string | undefined;
  /** Per-request timeout (default 30 s; hooks use less so they never hold up the harness). */
  timeoutMs?: number;
  /** Clock, for tests of the refresh window. */
  now?: () => number;
}

/** Reads a token file; undefined when absent or unreadable (the env token is the fallback). */
function readTokenFile(path: string): string | undefined {
  try {
    const t = readFileSync(path, 'utf8').trim();
    return t === '' ? undefined : t;
  } catch {
    return undefined;
  }
}

/**
 * The hub as seen from inside an agent: status reports, hook events and heartbeats for this one
 * agent, with its short-lived token refreshed before it runs out.
 */
export class AgentClient {
  readonly agentId: string;
  private token: string;
  private readonly hubUrl: string;
  private readonly tokenFile: string | undefined;
  private readonly hubSocket: string | undefined;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private refreshing: Promise<void> | undefined;

  constructor(options: AgentClientOptions) {
    this.hubUrl = options.hubUrl;
    this.agentId = options.agentId;
    this.tokenFile = options.tokenFile;
    this.hubSocket = options.hubSocket;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.now = options.now ?? Date.now;
    this.token = options.token;
    // Another graft-agent run may have refreshed already; the env token may then be expired.
    const shared = this.tokenFile === undefined ? undefined : readTokenFile(this.tokenFile);
    if (shared !== undefined && (tokenExpiry(shared) ?? 0) > (tokenExpiry(this.token) ?? 0)) this.token = shared;
  }

  /** A client from GRAFT_HUB_URL, GRAFT_AGENT_ID, GRAFT_AGENT_TOKEN (and optional GRAFT_AGENT_TOKEN_FILE, GRAFT_HUB_SOCKET); throws AgentConfigError. */
  static fromEnv(env: AgentEnv, options: Pick<AgentClientOptions, 'timeoutMs' | 'now'> = {}): AgentClient {
    return new AgentClient({ ...loadHubConfig(env), ...options });
  }

  /** The token in use now (after any refresh). */
  get currentToken(): string {
    return this.token;
  }

  /** Reports an activity (and optionally a detail) as the agent itself. */
  status(activity: Activity, detail?: string): Promise<AgentStatusResponse> {
    return this.report(detail === undefined ? { activity } : { activity, detail });
  }

  /** Asks the operator a question: activity waiting_for_input, sticky until the agent moves on. */
  ask(question: string): Promise<AgentStatusResponse> {
    return this.status('waiting_for_input', question);
  }

  /** Reports being blocked on something outside the agent. */
  blocked(why: string): Promise<AgentStatusResponse> {
    return this.status('blocked', why);
  }

  /** Reports the task done, with a summary. */
  done(summary: string): Promise<AgentStatusResponse> {
    return this.status('completed', summary);
  }

  /** Sends any status report (phase, activity, detail, source). */
  async report(body: Partial<AgentStatusRequest>): Promise<AgentStatusResponse> {
    return (await this.client()).reportStatus(this.agentId, body);
  }

  /**
   * Maps a harness hook event and reports it with source `hook`, so it cannot overwrite a sticky
   * activity; resolves null (sending nothing) for events that carry no status.
   */
  async hook(event: string, payload: unknown, harness: HookHarness = 'claude-code'): Promise<AgentStatusResponse | null> {
    const mapped = mapHookEvent(harness, event, payload);
    if (mapped === null) return null;
    return this.report({ ...mapped, source: 'hook' });
  }

  /** Tells the hub the agent is alive; answers what the hub thinks of it. */
  async heartbeat(): Promise<AgentHeartbeatResponse> {
    return (await this.client()).agentHeartbeat(this.agentId);
  }

  /**
   * Sends a heartbeat now and every `intervalMs`; failures (hub away, restarting) go to `onError`
   * and the next tick tries again. Returns the function that stops it.
   */
  startHeartbeat(intervalMs = 30_000, onError: (err: unknown) => void = () => {}, onBeat: (r: AgentHeartbeatResponse) => void = () => {}): () => void {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const tick = async () => {
      try {
        const r = await this.heartbeat();
        if (!stopped) onBeat(r);
      } catch (err) {
        if (!stopped) onError(err);
      }
      if (!stopped) timer = setTimeout(() => void tick(), intervalMs);
    };
    void tick();
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    };
  }

  /** Exchanges the token for a fresh one if it expires within the refresh window. */
  async ensureFreshToken(): Promise<void> {
    if (!needsRefresh(this.token, this.now(), REFRESH_WINDOW_MS)) return;
    // Concurrent calls share one refresh.
    this.refreshing ??= this.refresh().finally(() => {
      this.refreshing = undefined;
    });
    await this.refreshing;
  }

  private async refresh(): Promise<void> {
    const fresh = await this.plain().refreshAgentToken(this.agentId);
    this.token = fresh.token;
    if (this.tokenFile !== undefined) {
      const tmp = `${this.tokenFile}.${process.pid}.tmp`;
      writeFileSync(tmp, `${fresh.token}\n`, { mode: 0o600 });
      renameSync(tmp, this.tokenFile);
    }
  }

  /** A hub client with a token good for at least the refresh window. */
  private async client(): Promise<GraftClient> {
    await this.ensureFreshToken();
    return this.plain();
  }

  private plain(): GraftClient {
    return new GraftClient({ baseUrl: this.hubUrl, token: this.token, timeoutMs: this.timeoutMs, socketPath: this.hubSocket });
  }
}
