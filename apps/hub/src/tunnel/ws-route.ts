import type { IncomingMessage } from 'node:http';
import { type ApiKeyScope, GraftError } from '@graft/protocol';
import type { WebSocket } from 'ws';
import type { Authenticator } from '../auth/authenticator.js';
import type { Principal, UserPrincipal } from '../auth/principal.js';

/**
 * A WebSocket endpoint of the hub besides the broker tunnel. `accept` runs before the upgrade: it
 * authenticates, authorises and prepares, throwing a GraftError to refuse with the API's error body;
 * what it returns takes the socket once upgraded. `abandon` is called instead when the client went
 * during the upgrade, so whatever `accept` opened is released.
 */
export interface WsRoute {
  readonly name: string;
  /** Matches a request path; the captured parameters (e.g. the agent id), or null. */
  match(path: string): string[] | null;
  accept(req: IncomingMessage, params: string[], url: URL): Promise<AcceptedSocket>;
}

/** What a route accepted: takes the socket once upgraded, or releases what it prepared if the upgrade fails. */
export interface AcceptedSocket {
  connected(ws: WebSocket): void;
  abandon(): void;
}

/**
 * The caller of a viewer WebSocket: the `Authorization: Bearer` header, or `?token=` (browsers cannot
 * set headers on a WebSocket). Anonymous callers are refused; API keys need `scope`.
 */
export async function viewerPrincipal(authenticator: Authenticator, req: IncomingMessage, url: URL, scope: ApiKeyScope): Promise<Exclude<Principal, { kind: 'anonymous' }>> {
  const header = req.headers.authorization;
  const token = url.searchParams.get('token');
  const principal = await authenticator.authenticate(header !== undefined && header !== '' ? header : token ? `Bearer ${token}` : undefined);
  if (principal.kind === 'anonymous') throw new GraftError('unauthorized', 'authentication required: send "Authorization: Bearer <token>" or ?token=<token>');
  if (principal.kind === 'user' && principal.via === 'api_key' && !principal.scopes.includes(scope)) {
    throw new GraftError('forbidden', `this API key lacks the "${scope}" scope`);
  }
  return principal;
}

/** The caller as a user; agents and brokers are refused. */
export function viewerUser(principal: Principal): UserPrincipal {
  if (principal.kind === 'user') return principal;
  throw new GraftError('forbidden', 'this endpoint is for users, not agents');
}

/** A route for `/api/v1/agents/:id/<suffix>`. */
export function agentPathMatcher(suffix: string): (path: string) => string[] | null {
  const re = new RegExp(`^/api/v1/agents/([^/]+)/${suffix}$`);
  return (path) => {
    const m = re.exec(path);
    if (!m?.[1]) return null;
    try {
      return [decodeURIComponent(m[1])];
    } catch {
      return null;
    }
  };
}
