import { GraftClient } from '@graft/client';
import type { DevLoginResponse, ErrorBody, ErrorCode } from '@graft/protocol';
import { type HubFixture, startHubFixture } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

/**
 * Who calls. `platform` is the bootstrap platform admin (API key); `pAdmin`, `member` and `viewer`
 * hold those roles in project P; `outsider` is a member of project Q only; `revoked` is a revoked
 * API key of `member`; `readKey` is a read-only API key of `pAdmin`; `agent` is the JWT of agent A in P.
 */
type Who = 'anon' | 'revoked' | 'outsider' | 'viewer' | 'member' | 'pAdmin' | 'platform' | 'readKey' | 'agent';
type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

interface Route {
  method: Method;
  /** `{X}` placeholders are replaced by the ids created in beforeAll. */
  path: string;
  body?: unknown;
  /** Whether the route addresses a resource of project P (so outsiders must get 404). */
  inP?: boolean;
  /** Routes only agent tokens may call: users are refused with 403 before any lookup. */
  agentOnly?: boolean;
}

interface Case {
  who: Who;
  method: Method;
  path: string;
  body?: unknown;
  status: number;
  code?: ErrorCode;
}

const tpl = { harness: 'command', command: ['true'] };

/** One representative call per /api/v1 route (plus the query forms that address P). */
const ROUTES: Route[] = [
  { method: 'GET', path: '/api/v1/auth/me' },
  { method: 'POST', path: '/api/v1/api-keys', body: { name: 'matrix' } },
  { method: 'GET', path: '/api/v1/api-keys' },
  { method: 'DELETE', path: '/api/v1/api-keys/{revokedKey}' },
  { method: 'POST', path: '/api/v1/users', body: { email: 'matrix-new@example.com' } },
  { method: 'GET', path: '/api/v1/users' },
  { method: 'POST', path: '/api/v1/admin/signing-keys/rotate' },
  { method: 'GET', path: '/api/v1/admin/jobs' },
  { method: 'GET', path: '/api/v1/admin/broker-events?maxSecs=0' },
  { method: 'GET', path: '/api/v1/projects/{P}/events?maxSecs=0', inP: true },
  { method: 'POST', path: '/api/v1/admin/jobs/no-such-run/retry' },
  { method: 'GET', path: '/api/v1/projects' },
  { method: 'POST', path: '/api/v1/projects/register', body: { name: 'matrix' } },
  { method: 'GET', path: '/api/v1/projects/{P}', inP: true },
  { method: 'PATCH', path: '/api/v1/projects/{P}', body: { labels: { matrix: 'yes' } }, inP: true },
  { method: 'DELETE', path: '/api/v1/projects/{P}', inP: true },
  { method: 'GET', path: '/api/v1/projects/{P}/members', inP: true },
  { method: 'PUT', path: '/api/v1/projects/{P}/members/{spare}', body: { role: 'viewer' }, inP: true },
  { method: 'DELETE', path: '/api/v1/projects/{P}/members/{spare}', inP: true },
  { method: 'GET', path: '/api/v1/projects/{P}/secrets', inP: true },
  { method: 'PUT', path: '/api/v1/projects/{P}/secrets/MATRIX', body: { value: 'matrix-secret-value' }, inP: true },
  { method: 'DELETE', path: '/api/v1/projects/{P}/secrets/KEEP', inP: true },
  { method: 'GET', path: '/api/v1/templates' },
  { method: 'GET', path: '/api/v1/templates?projectId={P}', inP: true },
  { method: 'POST', path: '/api/v1/templates', body: { name: 'matrix-t', projectId: '{P}', ...tpl }, inP: true },
  { method: 'GET', path: '/api/v1/templates/{TP}', inP: true },
  { method: 'POST', path: '/api/v1/templates/{TP}/versions', body: { harness: 'command', command: ['false'] }, inP: true },
  { method: 'GET', path: '/api/v1/templates/{TP}/versions/1', inP: true },
  { method: 'GET', path: '/api/v1/templates/{TG}' },
  { method: 'POST', path: '/api/v1/templates/{TG}/versions', body: { harness: 'command', command: ['false'] } },
  { method: 'GET', path: '/api/v1/templates/{TG}/versions/1' },
  { method: 'GET', path: '/api/v1/agents' },
  { method: 'GET', path: '/api/v1/agents?projectId={P}', inP: true },
  { method: 'POST', path: '/api/v1/agents', body: { projectId: '{P}', name: 'matrix-a', template: 'tp' }, inP: true },
  { method: 'GET', path: '/api/v1/agents/{A}', inP: true },
  { method: 'POST', path: '/api/v1/agents/{A}/suspend', inP: true },
  { method: 'POST', path: '/api/v1/agents/{A}/start', inP: true },
  { method: 'POST', path: '/api/v1/agents/{A}/stop', inP: true },
  { method: 'POST', path: '/api/v1/agents/{A}/restart', inP: true },
  { method: 'DELETE', path: '/api/v1/agents/{A}', inP: true },
  { method: 'POST', path: '/api/v1/agents/{A}/status', body: { detail: 'matrix' }, inP: true, agentOnly: true },
  { method: 'POST', path: '/api/v1/agents/{A}/heartbeat', inP: true, agentOnly: true },
  { method: 'POST', path: '/api/v1/agents/{A}/messages', body: { body: 'matrix' }, inP: true },
  { method: 'GET', path: '/api/v1/agents/{A}/messages', inP: true },
  { method: 'GET', path: '/api/v1/agents/{A}/logs', inP: true },
  { method: 'POST', path: '/api/v1/agents/{A}/token', inP: true },
  { method: 'POST', path: '/api/v1/agents/{A}/token/refresh', inP: true, agentOnly: true },
  { method: 'POST', path: '/api/v1/brokers/register', body: { name: 'matrix-broker' } },
  { method: 'GET', path: '/api/v1/brokers' },
  { method: 'GET', path: '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0' },
  { method: 'POST', path: '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0/rotate-secret' },
  { method: 'POST', path: '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0/drain' },
  { method: 'POST', path: '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0/undrain' },
  { method: 'DELETE', path: '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0' },
  { method: 'PUT', path: '/api/v1/projects/{P}/brokers/00000000-0000-4000-8000-00000000b0b0' },
  { method: 'DELETE', path: '/api/v1/projects/{P}/brokers/00000000-0000-4000-8000-00000000b0b0' },
];

/** What agent A's own token may do; everything else is 403 for it. */
const AGENT_SELF = new Set(['GET /api/v1/auth/me', 'GET /api/v1/agents/{A}', 'POST /api/v1/agents/{A}/status', 'POST /api/v1/agents/{A}/heartbeat', 'GET /api/v1/agents/{A}/messages', 'GET /api/v1/agents/{A}/logs', 'POST /api/v1/agents/{A}/token/refresh']);

const denied = (who: Who, r: Route, status: number, code: ErrorCode): Case => ({ who, method: r.method, path: r.path, body: r.body, status, code });

/** Rows that follow from the rules alone; none of them changes anything, so they run first. */
const systematic: Case[] = [
  ...ROUTES.map((r) => denied('anon', r, 401, 'unauthorized')),
  ...ROUTES.map((r) => denied('revoked', r, 401, 'unauthorized')),
  ...ROUTES.filter((r) => r.method !== 'GET').map((r) => denied('readKey', r, 403, 'forbidden')),
  ...ROUTES.filter((r) => r.inP && !r.agentOnly).map((r) => denied('outsider', r, 404, 'not_found')),
  ...ROUTES.filter((r) => r.agentOnly).map((r) => denied('outsider', r, 403, 'forbidden')),
  ...ROUTES.filter((r) => !AGENT_SELF.has(`${r.method} ${r.path}`)).map((r) => denied('agent', r, 403, 'forbidden')),
];

const ok = (who: Who, method: Method, path: string, status: number, body?: unknown): Case => ({ who, method, path, body, status });
const no = (who: Who, method: Method, path: string, status: number, code: ErrorCode, body?: unknown): Case => ({ who, method, path, body, status, code });

/** Rows with role-specific outcomes, in an order that respects what earlier rows change. */
const specific: Case[] = [
  // Unauthenticated routes ignore credentials entirely.
  ok('anon', 'POST', '/api/v1/auth/dev-login', 200, { email: 'matrix-login@example.com' }),
  ok('revoked', 'POST', '/api/v1/auth/dev-login', 200, { email: 'matrix-login@example.com' }),
  ok('anon', 'GET', '/api/v1/openapi.json', 200),

  // whoami
  ok('outsider', 'GET', '/api/v1/auth/me', 200),
  ok('viewer', 'GET', '/api/v1/auth/me', 200),
  ok('readKey', 'GET', '/api/v1/auth/me', 200),
  ok('agent', 'GET', '/api/v1/auth/me', 200),
  ok('agent', 'GET', '/api/v1/agents/{A}', 200),
  ok('agent', 'GET', '/api/v1/agents/{A}/logs', 200),
  ok('viewer', 'GET', '/api/v1/agents/{A}/logs', 200),
  ok('readKey', 'GET', '/api/v1/agents/{A}/logs', 200),

  // API keys: any user manages their own; a stranger's key does not exist for them.
  ok('viewer', 'POST', '/api/v1/api-keys', 201, { name: 'viewer-key' }),
  ok('outsider', 'GET', '/api/v1/api-keys', 200),
  ok('readKey', 'GET', '/api/v1/api-keys', 200),
  no('outsider', 'DELETE', '/api/v1/api-keys/{revokedKey}', 404, 'not_found'),
  no('viewer', 'DELETE', '/api/v1/api-keys/{revokedKey}', 404, 'not_found'),
  ok('member', 'DELETE', '/api/v1/api-keys/{revokedKey}', 204),
  ok('platform', 'DELETE', '/api/v1/api-keys/{revokedKey}', 204),

  // Users: platform admins create and list; everyone may look one up by email.
  no('pAdmin', 'POST', '/api/v1/users', 403, 'forbidden', { email: 'by-padmin@example.com' }),
  ok('platform', 'POST', '/api/v1/users', 201, { email: 'by-platform@example.com' }),
  no('viewer', 'GET', '/api/v1/users', 403, 'forbidden'),
  no('pAdmin', 'GET', '/api/v1/users', 403, 'forbidden'),
  ok('viewer', 'GET', '/api/v1/users?email=p-admin%40example.com', 200),
  ok('readKey', 'GET', '/api/v1/users?email=p-admin%40example.com', 200),
  ok('platform', 'GET', '/api/v1/users', 200),

  // Signing keys: platform admin only. Everything below runs on tokens issued before this rotation.
  no('pAdmin', 'POST', '/api/v1/admin/signing-keys/rotate', 403, 'forbidden'),
  no('member', 'POST', '/api/v1/admin/signing-keys/rotate', 403, 'forbidden'),
  ok('platform', 'POST', '/api/v1/admin/signing-keys/rotate', 201),

  // Background jobs: platform admin only.
  no('pAdmin', 'GET', '/api/v1/admin/jobs', 403, 'forbidden'),
  no('member', 'POST', '/api/v1/admin/jobs/no-such-run/retry', 403, 'forbidden'),
  ok('platform', 'GET', '/api/v1/admin/jobs', 200),
  // Event streams: maxSecs=0 ends each right after its headers.
  no('pAdmin', 'GET', '/api/v1/admin/broker-events?maxSecs=0', 403, 'forbidden'),
  ok('platform', 'GET', '/api/v1/admin/broker-events?maxSecs=0', 200),
  ok('viewer', 'GET', '/api/v1/projects/{P}/events?maxSecs=0', 200),
  ok('readKey', 'GET', '/api/v1/projects/{P}/events?maxSecs=0', 200),
  ok('platform', 'GET', '/api/v1/projects/{P}/events?maxSecs=0', 200),
  no('platform', 'GET', '/api/v1/projects/00000000-0000-7000-8000-000000000000/events?maxSecs=0', 404, 'not_found'),
  no('platform', 'POST', '/api/v1/admin/jobs/no-such-run/retry', 404, 'not_found'),

  // Brokers are infrastructure: platform admins only, project admins included in the refusal.
  no('pAdmin', 'POST', '/api/v1/brokers/register', 403, 'forbidden', { name: 'matrix-broker' }),
  no('member', 'GET', '/api/v1/brokers', 403, 'forbidden'),
  no('outsider', 'GET', '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0', 403, 'forbidden'),
  ok('platform', 'POST', '/api/v1/brokers/register', 201, { name: 'matrix-broker' }),
  ok('platform', 'GET', '/api/v1/brokers', 200),
  no('pAdmin', 'POST', '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0/rotate-secret', 403, 'forbidden'),
  no('pAdmin', 'POST', '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0/drain', 403, 'forbidden'),
  no('member', 'POST', '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0/undrain', 403, 'forbidden'),
  no('pAdmin', 'DELETE', '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0', 403, 'forbidden'),
  no('pAdmin', 'PUT', '/api/v1/projects/{P}/brokers/00000000-0000-4000-8000-00000000b0b0', 403, 'forbidden'),
  no('pAdmin', 'DELETE', '/api/v1/projects/{P}/brokers/00000000-0000-4000-8000-00000000b0b0', 403, 'forbidden'),
  no('platform', 'POST', '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0/rotate-secret', 404, 'not_found'),
  no('platform', 'POST', '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0/drain', 404, 'not_found'),
  no('platform', 'DELETE', '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0', 404, 'not_found'),
  no('platform', 'PUT', '/api/v1/projects/{P}/brokers/00000000-0000-4000-8000-00000000b0b0', 404, 'not_found'),
  no('platform', 'DELETE', '/api/v1/projects/{P}/brokers/00000000-0000-4000-8000-00000000b0b0', 404, 'not_found'),
  no('platform', 'GET', '/api/v1/brokers/00000000-0000-4000-8000-00000000b0b0', 404, 'not_found'),
  // Joining authenticates by the join token in the body, and /brokers/self by a request signature
  // (broker-routes.test.ts covers both), whatever the Authorization header says.
  no('platform', 'GET', '/api/v1/brokers/self', 401, 'signature_missing'),
  no('anon', 'POST', '/api/v1/brokers/join', 404, 'not_found', { brokerId: '00000000-0000-4000-8000-00000000b0b0', joinToken: 'gjt_x', hostname: 'h', version: '1', runtimes: ['process'], capacity: { maxAgents: 1 } }),

  // Projects
  ok('outsider', 'GET', '/api/v1/projects', 200),
  ok('viewer', 'GET', '/api/v1/projects', 200),
  ok('readKey', 'GET', '/api/v1/projects', 200),
  ok('outsider', 'POST', '/api/v1/projects/register', 201, { name: 'outsider-new' }),
  no('outsider', 'POST', '/api/v1/projects/register', 409, 'conflict', { name: 'steal', gitRemote: 'git@github.com:Acme/P.git' }),
  ok('viewer', 'POST', '/api/v1/projects/register', 200, { name: 'p-again', gitRemote: 'https://github.com/acme/p' }),
  ok('viewer', 'GET', '/api/v1/projects/{P}', 200),
  ok('member', 'GET', '/api/v1/projects/{P}', 200),
  ok('pAdmin', 'GET', '/api/v1/projects/{P}', 200),
  ok('platform', 'GET', '/api/v1/projects/{P}', 200),
  ok('readKey', 'GET', '/api/v1/projects/{P}', 200),
  no('viewer', 'GET', '/api/v1/projects/{Q}', 404, 'not_found'),
  no('viewer', 'PATCH', '/api/v1/projects/{P}', 403, 'forbidden', { name: 'renamed' }),
  no('member', 'PATCH', '/api/v1/projects/{P}', 403, 'forbidden', { name: 'renamed' }),
  ok('pAdmin', 'PATCH', '/api/v1/projects/{P}', 200, { name: 'renamed' }),
  ok('platform', 'PATCH', '/api/v1/projects/{P}', 200, { labels: { by: 'platform' } }),
  no('viewer', 'DELETE', '/api/v1/projects/{P}', 403, 'forbidden'),
  no('member', 'DELETE', '/api/v1/projects/{P}', 403, 'forbidden'),
  no('pAdmin', 'DELETE', '/api/v1/projects/{P}', 409, 'conflict'),
  no('platform', 'DELETE', '/api/v1/projects/{P}', 409, 'conflict'),
  no('outsider', 'DELETE', '/api/v1/projects/{D}', 404, 'not_found'),
  no('member', 'DELETE', '/api/v1/projects/{D}', 404, 'not_found'),
  ok('pAdmin', 'DELETE', '/api/v1/projects/{D}', 204),
  no('pAdmin', 'GET', '/api/v1/projects/{D}', 404, 'not_found'),

  // Members
  ok('viewer', 'GET', '/api/v1/projects/{P}/members', 200),
  ok('member', 'GET', '/api/v1/projects/{P}/members', 200),
  no('viewer', 'PUT', '/api/v1/projects/{P}/members/{spare}', 403, 'forbidden', { role: 'viewer' }),
  no('member', 'PUT', '/api/v1/projects/{P}/members/{spare}', 403, 'forbidden', { role: 'viewer' }),
  no('member', 'PUT', '/api/v1/projects/{P}/members/{memberId}', 403, 'forbidden', { role: 'admin' }),
  ok('pAdmin', 'PUT', '/api/v1/projects/{P}/members/{spare}', 200, { role: 'viewer' }),
  no('viewer', 'DELETE', '/api/v1/projects/{P}/members/{spare}', 403, 'forbidden'),
  no('member', 'DELETE', '/api/v1/projects/{P}/members/{spare}', 403, 'forbidden'),
  ok('pAdmin', 'DELETE', '/api/v1/projects/{P}/members/{spare}', 204),
  no('pAdmin', 'DELETE', '/api/v1/projects/{P}/members/{pAdminId}', 409, 'conflict'),

  // Secrets: members list names, admins write.
  no('viewer', 'GET', '/api/v1/projects/{P}/secrets', 403, 'forbidden'),
  ok('member', 'GET', '/api/v1/projects/{P}/secrets', 200),
  ok('readKey', 'GET', '/api/v1/projects/{P}/secrets', 200),
  no('viewer', 'PUT', '/api/v1/projects/{P}/secrets/MATRIX', 403, 'forbidden', { value: 'v' }),
  no('member', 'PUT', '/api/v1/projects/{P}/secrets/MATRIX', 403, 'forbidden', { value: 'v' }),
  ok('pAdmin', 'PUT', '/api/v1/projects/{P}/secrets/MATRIX', 200, { value: 'matrix-secret-value' }),
  no('viewer', 'DELETE', '/api/v1/projects/{P}/secrets/KEEP', 403, 'forbidden'),
  no('member', 'DELETE', '/api/v1/projects/{P}/secrets/KEEP', 403, 'forbidden'),
  ok('pAdmin', 'DELETE', '/api/v1/projects/{P}/secrets/KEEP', 204),

  // Templates: project ones by role, global ones readable by every user and written by platform admins.
  ok('outsider', 'GET', '/api/v1/templates', 200),
  ok('viewer', 'GET', '/api/v1/templates?projectId={P}', 200),
  no('viewer', 'GET', '/api/v1/templates?projectId={Q}', 404, 'not_found'),
  no('viewer', 'POST', '/api/v1/templates', 403, 'forbidden', { name: 'by-viewer', projectId: '{P}', ...tpl }),
  ok('member', 'POST', '/api/v1/templates', 201, { name: 'by-member', projectId: '{P}', ...tpl }),
  ok('pAdmin', 'POST', '/api/v1/templates', 201, { name: 'by-admin', projectId: '{P}', ...tpl }),
  no('member', 'POST', '/api/v1/templates', 403, 'forbidden', { name: 'global-by-member', ...tpl }),
  no('pAdmin', 'POST', '/api/v1/templates', 403, 'forbidden', { name: 'global-by-padmin', ...tpl }),
  ok('platform', 'POST', '/api/v1/templates', 201, { name: 'global-by-platform', ...tpl }),
  ok('viewer', 'GET', '/api/v1/templates/{TP}', 200),
  ok('readKey', 'GET', '/api/v1/templates/{TP}', 200),
  no('viewer', 'POST', '/api/v1/templates/{TP}/versions', 403, 'forbidden', { harness: 'command', command: ['false'] }),
  ok('member', 'POST', '/api/v1/templates/{TP}/versions', 201, { harness: 'command', command: ['false'] }),
  ok('viewer', 'GET', '/api/v1/templates/{TP}/versions/1', 200),
  no('viewer', 'GET', '/api/v1/templates/{TQ}', 404, 'not_found'),
  ok('outsider', 'GET', '/api/v1/templates/{TG}', 200),
  ok('viewer', 'GET', '/api/v1/templates/{TG}/versions/1', 200),
  no('member', 'POST', '/api/v1/templates/{TG}/versions', 403, 'forbidden', { harness: 'command', command: ['false'] }),
  no('pAdmin', 'POST', '/api/v1/templates/{TG}/versions', 403, 'forbidden', { harness: 'command', command: ['false'] }),
  ok('platform', 'POST', '/api/v1/templates/{TG}/versions', 201, { harness: 'command', command: ['false'] }),

  // Agents: viewers read, members create and act, admins mint tokens.
  ok('outsider', 'GET', '/api/v1/agents', 200),
  ok('viewer', 'GET', '/api/v1/agents', 200),
  ok('viewer', 'GET', '/api/v1/agents?projectId={P}', 200),
  no('viewer', 'GET', '/api/v1/agents?projectId={Q}', 404, 'not_found'),
  no('viewer', 'POST', '/api/v1/agents', 403, 'forbidden', { projectId: '{P}', name: 'by-viewer', template: 'tp' }),
  ok('member', 'POST', '/api/v1/agents', 201, { projectId: '{P}', name: 'by-member', template: 'tp' }),
  ok('pAdmin', 'POST', '/api/v1/agents', 201, { projectId: '{P}', name: 'by-admin', template: 'global-by-platform' }),
  // P's template does not exist from Q, by name or by id.
  no('outsider', 'POST', '/api/v1/agents', 404, 'not_found', { projectId: '{Q}', name: 'borrow', template: 'tp' }),
  no('outsider', 'POST', '/api/v1/agents', 404, 'not_found', { projectId: '{Q}', name: 'borrow', template: '{TP}' }),
  ok('viewer', 'GET', '/api/v1/agents/{A}', 200),
  ok('member', 'GET', '/api/v1/agents/{A}', 200),
  ok('readKey', 'GET', '/api/v1/agents/{A}', 200),
  no('viewer', 'GET', '/api/v1/agents/{QA}', 404, 'not_found'),
  no('pAdmin', 'POST', '/api/v1/agents/{QA}/stop', 404, 'not_found'),
  // A fresh agent in phase `created` cannot be suspended, started or restarted: 409 proves authorisation passed.
  no('viewer', 'POST', '/api/v1/agents/{A}/suspend', 403, 'forbidden'),
  no('member', 'POST', '/api/v1/agents/{A}/suspend', 409, 'invalid_transition'),
  no('pAdmin', 'POST', '/api/v1/agents/{A}/suspend', 409, 'invalid_transition'),
  no('platform', 'POST', '/api/v1/agents/{A}/suspend', 409, 'invalid_transition'),
  no('viewer', 'POST', '/api/v1/agents/{A}/start', 403, 'forbidden'),
  no('member', 'POST', '/api/v1/agents/{A}/start', 409, 'invalid_transition'),
  no('viewer', 'POST', '/api/v1/agents/{A}/restart', 403, 'forbidden'),
  no('member', 'POST', '/api/v1/agents/{A}/restart', 409, 'invalid_transition'),
  no('viewer', 'POST', '/api/v1/agents/{A}/stop', 403, 'forbidden'),
  no('viewer', 'DELETE', '/api/v1/agents/{A}', 403, 'forbidden'),
  // Agent C is the one that really changes: stop, start again, delete.
  ok('member', 'POST', '/api/v1/agents/{C}/stop', 200),
  no('member', 'POST', '/api/v1/agents/{C}/stop', 409, 'invalid_transition'),
  ok('member', 'POST', '/api/v1/agents/{C}/start', 200),
  no('viewer', 'DELETE', '/api/v1/agents/{C}', 403, 'forbidden'),
  ok('member', 'DELETE', '/api/v1/agents/{C}', 204),
  no('member', 'GET', '/api/v1/agents/{C}', 404, 'not_found'),
  no('viewer', 'POST', '/api/v1/agents/{A}/token', 403, 'forbidden'),
  no('member', 'POST', '/api/v1/agents/{A}/token', 403, 'forbidden'),
  ok('pAdmin', 'POST', '/api/v1/agents/{A}/token', 201),
  ok('platform', 'POST', '/api/v1/agents/{A}/token', 201),
  no('pAdmin', 'POST', '/api/v1/agents/{A}/status', 403, 'forbidden', { detail: 'from a user' }),
  no('pAdmin', 'POST', '/api/v1/agents/{A}/token/refresh', 403, 'forbidden'),
  no('pAdmin', 'POST', '/api/v1/agents/{A}/heartbeat', 403, 'forbidden'),
  no('viewer', 'POST', '/api/v1/agents/{A}/messages', 403, 'forbidden', { body: 'hello' }),
  ok('member', 'POST', '/api/v1/agents/{A}/messages', 201, { body: 'hello' }),
  ok('viewer', 'GET', '/api/v1/agents/{A}/messages', 200),

  // Agent tokens touch only their own agent.
  ok('agent', 'POST', '/api/v1/agents/{A}/status', 200, { detail: 'working on it' }),
  ok('agent', 'POST', '/api/v1/agents/{A}/token/refresh', 201),
  ok('agent', 'POST', '/api/v1/agents/{A}/heartbeat', 200),
  ok('agent', 'GET', '/api/v1/agents/{A}/messages', 200),
  no('agent', 'GET', '/api/v1/agents/{B}/messages', 403, 'forbidden'),
  no('agent', 'POST', '/api/v1/agents/{A}/messages', 403, 'forbidden', { body: 'to myself' }),
  no('agent', 'POST', '/api/v1/agents/{B}/heartbeat', 403, 'forbidden'),
  no('agent', 'GET', '/api/v1/agents/{B}', 403, 'forbidden'),
  no('agent', 'POST', '/api/v1/agents/{B}/status', 403, 'forbidden', { detail: 'impersonating' }),
  no('agent', 'POST', '/api/v1/agents/{B}/token/refresh', 403, 'forbidden'),
  no('agent', 'POST', '/api/v1/agents/{B}/stop', 403, 'forbidden'),
  no('agent', 'DELETE', '/api/v1/agents/{B}', 403, 'forbidden'),
  no('agent', 'GET', '/api/v1/projects/{Q}', 403, 'forbidden'),
];

const CASES: Case[] = [...systematic, ...specific];

let fx: HubFixture;
const ids: Record<string, string> = {};
const tokens = {} as Record<Exclude<Who, 'anon'>, string>;

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  const base = fx.hub.url;
  const platform = new GraftClient({ baseUrl: base, token: fx.hub.adminToken });
  const login = async (email: string) => {
    const r = await fetch(`${base}/api/v1/auth/dev-login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email }) });
    expect(r.status).toBe(200);
    const body = (await r.json()) as DevLoginResponse;
    return { ...body, client: platform.withToken(body.token) };
  };
  const [pAdmin, member, viewer, outsider, spare] = await Promise.all(
    ['p-admin@example.com', 'p-member@example.com', 'p-viewer@example.com', 'q-member@example.com', 'spare@example.com'].map(login),
  );
  if (!pAdmin || !member || !viewer || !outsider || !spare) throw new Error('login failed');

  const P = (await pAdmin.client.registerProject({ name: 'p', gitRemote: 'https://github.com/acme/p' })).project.id;
  const Q = (await outsider.client.registerProject({ name: 'q' })).project.id;
  const D = (await pAdmin.client.registerProject({ name: 'd' })).project.id;
  await pAdmin.client.putMember(P, member.user.id, 'member');
  await pAdmin.client.putMember(P, viewer.user.id, 'viewer');
  const TP = (await pAdmin.client.createTemplate({ name: 'tp', projectId: P, harness: 'command', command: ['true'] })).id;
  const TQ = (await outsider.client.createTemplate({ name: 'tq', projectId: Q, harness: 'command', command: ['true'] })).id;
  const TG = (await platform.createTemplate({ name: 'tg', harness: 'command', command: ['true'] })).id;
  const [A, B, C] = await Promise.all(['a', 'b', 'c'].map(async (name) => (await member.client.createAgent({ projectId: P, name, template: 'tp' })).id));
  const QA = (await outsider.client.createAgent({ projectId: Q, name: 'qa', template: 'tq' })).id;
  await pAdmin.client.putSecret(P, 'KEEP', 'keep-secret-value');
  const agentToken = (await pAdmin.client.mintAgentToken(A ?? '')).token;
  const revoked = await member.client.createApiKey({ name: 'to-revoke' });
  await member.client.revokeApiKey(revoked.id);
  const readKey = await pAdmin.client.createApiKey({ name: 'read-only', scopes: ['read'] });

  Object.assign(ids, {
    P,
    Q,
    D,
    TP,
    TQ,
    TG,
    A,
    B,
    C,
    QA,
    spare: spare.user.id,
    memberId: member.user.id,
    pAdminId: pAdmin.user.id,
    revokedKey: revoked.id,
  });
  Object.assign(tokens, {
    revoked: revoked.token,
    outsider: outsider.token,
    viewer: viewer.token,
    member: member.token,
    pAdmin: pAdmin.token,
    platform: fx.hub.adminToken,
    readKey: readKey.token,
    agent: agentToken,
  });
});
afterAll(async () => {
  await fx?.stop();
});

function fill(s: string): string {
  return s.replace(/\{(\w+)\}/g, (_, k: string) => {
    const v = ids[k];
    if (v === undefined) throw new Error(`no id for {${k}}`);
    return v;
  });
}

describe('authorisation matrix', () => {
  it('covers every /api/v1 route for anonymous, revoked, read-only and agent callers', async () => {
    const doc = (await (await fetch(`${fx.hub.url}/api/v1/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(doc.paths)
      .filter(([p]) => p.startsWith('/api/v1/') && p !== '/api/v1/openapi.json' && p !== '/api/v1/auth/dev-login' && p !== '/api/v1/brokers/join' && p !== '/api/v1/brokers/self')
      .flatMap(([p, ops]) => Object.keys(ops).map((m) => ({ op: `${m.toUpperCase()} ${p}`, method: m.toUpperCase(), re: new RegExp(`^${p.replace(/\{[^}]+\}/g, '[^/]+')}$`) })));
    expect(documented.length).toBeGreaterThan(30);
    const uncovered = documented.filter((d) => !ROUTES.some((r) => r.method === d.method && d.re.test(r.path.replace(/\?.*$/, ''))));
    expect(uncovered.map((d) => d.op)).toEqual([]);
  });

  // Labels like "viewer PUT /api/v1/projects/{P}/secrets/MATRIX -> 403 forbidden" name the failing case.
  it.each(CASES.map((c) => [`${c.who} ${c.method} ${c.path} -> ${c.status}${c.code ? ` ${c.code}` : ''}`, c] as const))('%s', async (_label, c) => {
    const headers: Record<string, string> = {};
    if (c.who !== 'anon') headers.authorization = `Bearer ${tokens[c.who]}`;
    if (c.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${fx.hub.url}${fill(c.path)}`, {
      method: c.method,
      headers,
      body: c.body === undefined ? null : fill(JSON.stringify(c.body)),
    });
    const text = await res.text();
    const body = (text === '' ? undefined : JSON.parse(text)) as Partial<ErrorBody> | undefined;
    expect({ status: res.status, code: body?.error?.code }).toEqual({ status: c.status, code: c.code });
  });
});
