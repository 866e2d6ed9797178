import type { CliEnv } from './config.js';
import type { Credentials } from './credentials.js';
import { CliError, UsageError } from './errors.js';

/** Which hub to talk to and with what token. */
export interface Connection {
  hubUrl: string;
  token: string;
}

/** The global `--hub` / `--token` flags. */
export interface ConnectionFlags {
  hub?: string | undefined;
  token?: string | undefined;
}

/** Checks and normalises a hub URL: http(s), no trailing slash. */
export function normaliseHubUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`hub URL ${JSON.stringify(raw)} is not a URL (expected e.g. http://127.0.0.1:8080)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`hub URL must use http or https, got ${url.protocol}`);
  return `${url.origin}${url.pathname}`.replace(/\/+$/, '');
}

/**
 * Picks the hub URL and token, each by precedence flag > env > credentials file. The stored token
 * is only used for the hub it was stored for, so pointing `--hub` elsewhere never leaks it.
 */
export function resolveConnection(flags: ConnectionFlags, env: CliEnv, stored: Credentials | undefined): Connection {
  const rawHub = flags.hub ?? env.hubUrl ?? stored?.hubUrl;
  if (rawHub === undefined) {
    throw new CliError('not_configured', 'no hub configured: run graft login --hub URL --token T, pass --hub, or set GRAFT_HUB_URL');
  }
  const hubUrl = normaliseHubUrl(rawHub);
  const storedForThisHub = stored !== undefined && normaliseHubUrl(stored.hubUrl) === hubUrl ? stored.token : undefined;
  const token = flags.token ?? env.token ?? storedForThisHub;
  if (token === undefined) {
    const why = stored ? `the stored credentials are for ${stored.hubUrl}` : 'not logged in';
    throw new CliError('not_configured', `no token for ${hubUrl} (${why}): run graft login --hub ${hubUrl} --token T, pass --token, or set GRAFT_TOKEN`);
  }
  return { hubUrl, token };
}
