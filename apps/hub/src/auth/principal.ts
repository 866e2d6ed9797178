import type { ApiKeyScope } from '@graft/protocol';

/** A person, authenticated by a user JWT or an API key. */
export interface UserPrincipal {
  kind: 'user';
  userId: string;
  email: string;
  isAdmin: boolean;
  via: 'jwt' | 'api_key';
  scopes: ApiKeyScope[];
  apiKeyId: string | null;
}

/** An agent, authenticated by its short-lived JWT. */
export interface AgentPrincipal {
  kind: 'agent';
  agentId: string;
  projectId: string;
}

/** A runtime broker, authenticated by an HMAC-signed request. */
export interface BrokerPrincipal {
  kind: 'broker';
  brokerId: string;
}

/** Whoever made the request. */
export type Principal = { kind: 'anonymous' } | UserPrincipal | AgentPrincipal | BrokerPrincipal;
