/** The environment graft-agent reads, passed in (only main.ts touches process.env). */
export type AgentEnv = Record<string, string | undefined>;

/** A missing or malformed GRAFT_* variable. */
export class AgentConfigError extends Error {
  override readonly name = 'AgentConfigError';
}

/** How an agent reaches the hub. */
export interface HubConfig {
  hubUrl: string;
  agentId: string;
  token: string;
  /** Optional file shared by separate graft-agent runs, holding the latest refreshed token. */
  tokenFile: string | undefined;
  /** Optional Unix socket of the broker's hub relay; when set, requests go through it instead of to GRAFT_HUB_URL directly. */
  hubSocket: string | undefined;
}

const WHY = 'graft-agent runs inside an agent started by a Graft broker, which sets these';

/** GRAFT_HUB_URL, GRAFT_AGENT_ID, GRAFT_AGENT_TOKEN and optional GRAFT_AGENT_TOKEN_FILE and GRAFT_HUB_SOCKET. */
export function loadHubConfig(env: AgentEnv): HubConfig {
  const missing = ['GRAFT_HUB_URL', 'GRAFT_AGENT_ID', 'GRAFT_AGENT_TOKEN'].filter((k) => !env[k]);
  if (missing.length > 0) throw new AgentConfigError(`${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not set (${WHY})`);
  const hubUrl = env.GRAFT_HUB_URL ?? '';
  try {
    const u = new URL(hubUrl);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError('not http(s)');
  } catch {
    throw new AgentConfigError(`GRAFT_HUB_URL is not an http(s) URL: ${hubUrl}`);
  }
  return { hubUrl, agentId: env.GRAFT_AGENT_ID ?? '', token: env.GRAFT_AGENT_TOKEN ?? '', tokenFile: env.GRAFT_AGENT_TOKEN_FILE || undefined, hubSocket: env.GRAFT_HUB_SOCKET || undefined };
}

/** GRAFT_INBOX: the agent's inbox.jsonl; GRAFT_INBOX_OFFSET: where its read position is kept (default: next to it). */
export function loadInbox(env: AgentEnv): { path: string; offsetFile: string } {
  const p = env.GRAFT_INBOX;
  if (!p) throw new AgentConfigError(`GRAFT_INBOX is not set (${WHY})`);
  return { path: p, offsetFile: env.GRAFT_INBOX_OFFSET || `${p}.offset` };
}
