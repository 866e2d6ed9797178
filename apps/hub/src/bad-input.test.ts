import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { GraftClient } from '@graft/client';
import { type Agent, ErrorCode } from '@graft/protocol';
import { type HubFixture, startHubFixture } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

// "No input may produce a 500": every answer to bad input is a 4xx with the standard error body.

let fx: HubFixture;
let admin: GraftClient;
let alice: GraftClient;
let aliceToken: string;
let aliceUserId: string;
let projectId: string;
let templateId: string;
let agent: Agent;
let agentToken: string;

interface Sent {
  method: string;
  path: string;
  /** Bearer token; undefined means the admin's, null means no Authorization header. */
  token?: string | null;
  body?: string | Buffer;
  /** Content-Type for the body; null sends none. */
  contentType?: string | null;
  headers?: Record<string, string>;
}

interface Answer {
  status: number;
  contentType: string;
  requestIdHeader: string | undefined;
  text: string;
  json: unknown;
}

/** Sends exactly the bytes asked for (node:http, so GET may carry a body and nothing is re-encoded). */
function send(s: Sent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...(s.headers ?? {}) };
    if (s.token !== null) headers.authorization = `Bearer ${s.token ?? fx.hub.adminToken}`;
    if (s.body !== undefined) {
      if (s.contentType !== null) headers['content-type'] = s.contentType ?? 'application/json';
      headers['content-length'] = Buffer.byteLength(s.body);
    }
    const req = httpRequest({ host: '127.0.0.1', port: fx.hub.port, method: s.method, path: s.path, headers }, (res) => {
      // An event stream that was opened never ends by design: its status and headers are the answer.
      if (res.statusCode === 200 && String(res.headers['content-type']).startsWith('text/event-stream')) {
        res.destroy();
        resolve({ status: 200, contentType: String(res.headers['content-type']), requestIdHeader: undefined, text: '', json: undefined });
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = text === '' ? undefined : JSON.parse(text);
        } catch {
          json = undefined;
        }
        const rid = res.headers['x-request-id'];
        resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'] ?? '', requestIdHeader: typeof rid === 'string' ? rid : undefined, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(s.body);
  });
}

const json = (v: unknown): string => JSON.stringify(v);

/** Why an answer is not a 4xx with the standard error body, or undefined when it is. */
function errorProblem(a: Answer): string | undefined {
  if (a.status < 400 || a.status >= 500) return `status ${a.status}: ${a.text.slice(0, 200)}`;
  if (!a.contentType.startsWith('application/json')) return `content-type ${a.contentType}`;
  const err = (a.json as { error?: { code?: unknown; message?: unknown; requestId?: unknown } } | undefined)?.error;
  if (!err) return `no error object: ${a.text.slice(0, 200)}`;
  if (!ErrorCode.safeParse(err.code).success) return `unknown code ${String(err.code)}`;
  if (typeof err.message !== 'string' || err.message === '') return 'no message';
  if (typeof err.requestId !== 'string' || err.requestId !== a.requestIdHeader) return `requestId ${String(err.requestId)} vs header ${a.requestIdHeader}`;
  return undefined;
}

function errorCode(a: Answer): string | undefined {
  return (a.json as { error?: { code?: string } } | undefined)?.error?.code;
}

function issuePaths(a: Answer): string[] {
  const details = (a.json as { error?: { details?: { issues?: Array<{ path: string }> } } } | undefined)?.error?.details;
  return (details?.issues ?? []).map((i) => i.path);
}

/** Asserts the exact status and error code, and the standard error body. */
function expectError(a: Answer, status: number, code: ErrorCode, label = ''): void {
  expect(a.status, `${label} ${a.text.slice(0, 300)}`).toBe(status);
  expect(errorProblem(a), label).toBeUndefined();
  expect(errorCode(a), label).toBe(code);
}

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  admin = new GraftClient({ baseUrl: fx.hub.url, token: fx.hub.adminToken });
  const login = await new GraftClient({ baseUrl: fx.hub.url }).devLogin('alice@bad-input.test');
  aliceToken = login.token;
  aliceUserId = login.user.id;
  alice = admin.withToken(aliceToken);
  projectId = (await alice.registerProject({ name: 'bad-input' })).project.id;
  templateId = (await alice.createTemplate({ name: 'worker', projectId, harness: 'command', command: ['true'] })).id;
  agent = await alice.createAgent({ projectId, name: 'target', template: 'worker' });
  agentToken = (await alice.mintAgentToken(agent.id)).token;
});
afterAll(async () => {
  await fx?.stop();
});

describe('bad bodies', () => {
  it('answers malformed JSON with 400 bad_request', async () => {
    for (const body of ['{"projectId":', '{bad json}', "{'single': 'quotes'}", '{"a":1,}', '\u0000', 'undefined']) {
      expectError(await send({ method: 'POST', path: '/api/v1/agents', body }), 400, 'bad_request', body);
    }
    expectError(await send({ method: 'POST', path: '/api/v1/templates', token: aliceToken, body: '[1,2' }), 400, 'bad_request');
    expectError(await send({ method: 'POST', path: `/api/v1/agents/${agent.id}/status`, token: agentToken, body: '{"phase":}' }), 400, 'bad_request');
    expectError(await send({ method: 'PATCH', path: `/api/v1/projects/${projectId}`, token: aliceToken, body: '{' }), 400, 'bad_request');
  });

  it('answers a JSON body that is not an object with 400 validation_error', async () => {
    for (const body of ['[]', '[{"projectId":"x"}]', '"a string"', 'null', '42', 'true', '{}']) {
      expectError(await send({ method: 'POST', path: '/api/v1/agents', token: aliceToken, body }), 400, 'validation_error', body);
      expectError(await send({ method: 'POST', path: `/api/v1/agents/${agent.id}/status`, token: agentToken, body }), 400, 'validation_error', `status ${body}`);
    }
  });

  it('answers wrong types with 400 validation_error listing each offending field', async () => {
    const a = await send({
      method: 'POST',
      path: '/api/v1/agents',
      token: aliceToken,
      body: json({ projectId: 123, name: true, template: ['worker'], task: 5, labels: 'team=core', env: [1] }),
    });
    expectError(a, 400, 'validation_error');
    expect(issuePaths(a)).toEqual(expect.arrayContaining(['body.projectId', 'body.name', 'body.template', 'body.task', 'body.labels', 'body.env']));

    const t = await send({ method: 'POST', path: '/api/v1/templates', token: aliceToken, body: json({ name: 'typed', projectId, harness: 'command', command: 'echo hi', resources: { cpus: '2' } }) });
    expectError(t, 400, 'validation_error');
    expect(issuePaths(t)).toEqual(expect.arrayContaining(['body.command', 'body.resources.cpus']));

    const s = await send({ method: 'POST', path: `/api/v1/agents/${agent.id}/status`, token: agentToken, body: json({ detail: 42 }) });
    expectError(s, 400, 'validation_error');
    expect(issuePaths(s)).toContain('body.detail');
  });

  it('answers unknown enum values with 400 validation_error naming the field', async () => {
    const cases: Array<[Sent, string]> = [
      [{ method: 'POST', path: '/api/v1/templates', token: aliceToken, body: json({ name: 'enum', projectId, harness: 'foo' }) }, 'body.harness'],
      [{ method: 'POST', path: `/api/v1/agents/${agent.id}/status`, token: agentToken, body: json({ phase: 'flying' }) }, 'body.phase'],
      [{ method: 'POST', path: `/api/v1/agents/${agent.id}/status`, token: agentToken, body: json({ activity: 'dancing' }) }, 'body.activity'],
      [{ method: 'POST', path: `/api/v1/agents/${agent.id}/status`, token: agentToken, body: json({ detail: 'x', source: 'broker' }) }, 'body.source'],
      [{ method: 'PUT', path: `/api/v1/projects/${projectId}/members/${aliceUserId}`, token: aliceToken, body: json({ role: 'owner' }) }, 'body.role'],
      [{ method: 'POST', path: '/api/v1/api-keys', token: aliceToken, body: json({ name: 'k', scopes: ['admin'] }) }, 'body.scopes.0'],
      [{ method: 'GET', path: `/api/v1/agents?phase=flying`, token: aliceToken }, 'query.phase'],
    ];
    for (const [sent, path] of cases) {
      const a = await send(sent);
      expectError(a, 400, 'validation_error', path);
      expect(issuePaths(a), path).toContain(path);
    }
    expect((await alice.getAgent(agent.id)).phase).toBe('created');
  });

  it('answers unknown extra keys with 400 validation_error', async () => {
    const cases: Sent[] = [
      { method: 'POST', path: '/api/v1/agents', token: aliceToken, body: json({ projectId, name: 'extra', template: 'worker', isAdmin: true }) },
      { method: 'POST', path: '/api/v1/templates', token: aliceToken, body: json({ name: 'extra', projectId, harness: 'command', privileged: true }) },
      { method: 'POST', path: `/api/v1/templates/${templateId}/versions`, token: aliceToken, body: json({ harness: 'command', name: 'rename' }) },
      { method: 'POST', path: `/api/v1/agents/${agent.id}/status`, token: agentToken, body: json({ phase: 'provisioning', generation: 99 }) },
      { method: 'POST', path: '/api/v1/projects/register', token: aliceToken, body: json({ name: 'extra', owner: 'me' }) },
      { method: 'PATCH', path: `/api/v1/projects/${projectId}`, token: aliceToken, body: json({ name: 'renamed', id: randomUUID() }) },
      { method: 'PUT', path: `/api/v1/projects/${projectId}/members/${aliceUserId}`, token: aliceToken, body: json({ role: 'admin', super: true }) },
      { method: 'POST', path: '/api/v1/api-keys', token: aliceToken, body: json({ name: 'k', userId: randomUUID() }) },
      { method: 'POST', path: '/api/v1/auth/dev-login', token: null, body: json({ email: 'x@y.test', isAdmin: true }) },
      { method: 'POST', path: '/api/v1/users', body: json({ email: 'x@y.test', password: 'p' }) },
    ];
    for (const sent of cases) {
      const a = await send(sent);
      expectError(a, 400, 'validation_error', `${sent.method} ${sent.path}`);
      expect(JSON.stringify(a.json), sent.path).toContain('unrecognized_keys');
    }
    // Nothing was half-applied.
    expect((await alice.listAgents({ projectId })).items.map((a) => a.name)).toEqual(['target']);
    expect((await alice.getProject(projectId)).name).toBe('bad-input');
  });

  it('answers a body over 1 MiB with 413 payload_too_large', async () => {
    const big = json({ projectId, name: 'big', template: 'worker', task: 'x'.repeat(1024 * 1024 + 16) });
    expectError(await send({ method: 'POST', path: '/api/v1/agents', token: aliceToken, body: big }), 413, 'payload_too_large');
    const bigStatus = json({ detail: 'y'.repeat(1100 * 1024) });
    expectError(await send({ method: 'POST', path: `/api/v1/agents/${agent.id}/status`, token: agentToken, body: bigStatus }), 413, 'payload_too_large');
  });

  it('answers a non-JSON Content-Type on a JSON route with 415 unsupported_media_type', async () => {
    const body = json({ projectId, name: 'plain', template: 'worker' });
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'multipart/form-data; boundary=x']) {
      expectError(await send({ method: 'POST', path: '/api/v1/agents', token: aliceToken, body, contentType }), 415, 'unsupported_media_type', contentType);
    }
    expectError(await send({ method: 'POST', path: '/api/v1/agents', token: aliceToken, body, contentType: 'application/json; charset=latin1' }), 415, 'unsupported_media_type');
    // A charset body-parser accepts but that does not match the bytes is just unparseable JSON.
    expectError(await send({ method: 'POST', path: '/api/v1/agents', token: aliceToken, body, contentType: 'application/json; charset=utf-16' }), 400, 'bad_request');
    expectError(
      await send({ method: 'POST', path: '/api/v1/agents', token: aliceToken, body, headers: { 'content-encoding': 'compress' } }),
      415,
      'unsupported_media_type',
      'content-encoding compress',
    );
    // A body without any Content-Type is not parsed, so it counts as missing fields.
    expectError(await send({ method: 'POST', path: '/api/v1/agents', token: aliceToken, body, contentType: null }), 400, 'validation_error');
    expect((await alice.listAgents({ projectId })).items.map((a) => a.name)).toEqual(['target']);
  });

  it('answers a gzip body that does not inflate with 400 bad_request', async () => {
    const a = await send({ method: 'POST', path: '/api/v1/agents', token: aliceToken, body: 'definitely not gzip', headers: { 'content-encoding': 'gzip' } });
    expectError(a, 400, 'bad_request');
  });
});

describe('bad names and free text', () => {
  it('rejects huge strings in names with 400 validation_error', async () => {
    const huge = 'a'.repeat(100_000);
    const cases: Sent[] = [
      { method: 'POST', path: '/api/v1/agents', token: aliceToken, body: json({ projectId, name: huge, template: 'worker' }) },
      { method: 'POST', path: '/api/v1/agents', token: aliceToken, body: json({ projectId, name: 'ok', template: huge }) },
      { method: 'POST', path: '/api/v1/templates', token: aliceToken, body: json({ name: huge, projectId, harness: 'command' }) },
      { method: 'POST', path: '/api/v1/projects/register', token: aliceToken, body: json({ name: huge }) },
      { method: 'POST', path: '/api/v1/api-keys', token: aliceToken, body: json({ name: huge }) },
      { method: 'POST', path: `/api/v1/agents/${agent.id}/status`, token: agentToken, body: json({ detail: 'd'.repeat(4097) }) },
    ];
    for (const sent of cases) expectError(await send(sent), 400, 'validation_error', sent.path);
  });

  it('rejects unicode, emoji and other non-DNS names with 400 validation_error', async () => {
    for (const name of ['café', '🚀', 'ｗｏｒｋｅｒ', 'אגנט', 'UPPER', '-dash', 'dash-', 'has space', 'a_b', 'a.b', '', 'a\u0000b', 'a\u200bb']) {
      const agentRes = await send({ method: 'POST', path: '/api/v1/agents', token: aliceToken, body: json({ projectId, name, template: 'worker' }) });
      expectError(agentRes, 400, 'validation_error', `agent ${json(name)}`);
      expect(issuePaths(agentRes)).toContain('body.name');
      expectError(await send({ method: 'POST', path: '/api/v1/templates', token: aliceToken, body: json({ name, projectId, harness: 'command' }) }), 400, 'validation_error', `template ${json(name)}`);
      expectError(await send({ method: 'POST', path: '/api/v1/projects/register', token: aliceToken, body: json({ name }) }), 400, 'validation_error', `project ${json(name)}`);
    }
  });

  it('stores SQL-looking free text verbatim', async () => {
    const evil = ["'; DROP TABLE agents; --", "' OR '1'='1", 'Robert"); DELETE FROM users;--', '$1 $$ \\x00 %s {{x}} $(id)', "é ü 中文 🚀 '\"`"];
    const created = await alice.createAgent({ projectId, name: 'sqlish', template: 'worker', task: evil.join('\n'), labels: { a: evil[0] ?? '', b: evil[1] ?? '', c: evil[4] ?? '' } });
    const read = await alice.getAgent(created.id);
    expect(read.task).toBe(evil.join('\n'));
    expect(read.labels).toEqual({ a: evil[0], b: evil[1], c: evil[4] });

    const self = admin.withToken((await alice.mintAgentToken(created.id)).token);
    for (const detail of evil) {
      expect((await self.reportStatus(created.id, { detail })).detail).toBe(detail);
      expect((await alice.getAgent(created.id)).detail).toBe(detail);
    }

    const t = await alice.createTemplate({ name: 'sqlish', projectId, harness: 'command', command: evil, env: { EVIL: evil[0] ?? '' } });
    const v = await alice.getTemplateVersion(t.id, 1);
    expect([v.command, v.env]).toEqual([evil, { EVIL: evil[0] }]);

    const p = await alice.updateProject(projectId, { labels: { note: evil[2] ?? '' } });
    expect(p.labels).toEqual({ note: evil[2] });
    await alice.updateProject(projectId, { labels: {} });

    // A name that looks like SQL is never looked up, it is refused.
    const ref = await send({ method: 'POST', path: '/api/v1/agents', token: aliceToken, body: json({ projectId, name: 'sqlref', template: "worker' OR '1'='1" }) });
    expectError(ref, 400, 'validation_error');
    expect(issuePaths(ref)).toContain('body.template');
  });

  it('never answers 500 to a NUL character in free text: it is refused (400) or stored verbatim', async () => {
    const nul = 'before\u0000after';
    const cases: Array<{ label: string; sent: Sent; readBack: () => Promise<unknown> }> = [];
    const add = (label: string, sent: Sent, readBack: () => Promise<unknown>) => cases.push({ label, sent, readBack });
    add('agent task', { method: 'POST', path: '/api/v1/agents', token: aliceToken, body: json({ projectId, name: 'nul-task', template: 'worker', task: nul }) }, async () => {
      const items = (await alice.listAgents({ projectId, limit: 500 })).items;
      return items.find((a) => a.name === 'nul-task')?.task;
    });
    add('agent label', { method: 'POST', path: '/api/v1/agents', token: aliceToken, body: json({ projectId, name: 'nul-label', template: 'worker', labels: { k: nul } }) }, async () => {
      const items = (await alice.listAgents({ projectId, limit: 500 })).items;
      return items.find((a) => a.name === 'nul-label')?.labels.k;
    });
    add('status detail', { method: 'POST', path: `/api/v1/agents/${agent.id}/status`, token: agentToken, body: json({ detail: nul }) }, async () => (await alice.getAgent(agent.id)).detail);
    add('template command', { method: 'POST', path: '/api/v1/templates', token: aliceToken, body: json({ name: 'nul-command', projectId, harness: 'command', command: [nul] }) }, async () => {
      const items = (await alice.listTemplates({ projectId, limit: 500 })).items;
      return items.find((t) => t.name === 'nul-command')?.latest.command?.[0];
    });
    add('api key name', { method: 'POST', path: '/api/v1/api-keys', token: aliceToken, body: json({ name: nul }) }, async () => {
      const items = (await alice.listApiKeys({ limit: 500 })).items;
      return items.find((k) => k.name.startsWith('before'))?.name;
    });
    add('user name', { method: 'POST', path: '/api/v1/users', body: json({ email: 'nul@bad-input.test', name: nul }) }, async () => {
      const items = (await admin.listUsers({ email: 'nul@bad-input.test' })).items;
      return items[0]?.name;
    });
    add('project label', { method: 'PATCH', path: `/api/v1/projects/${projectId}`, token: aliceToken, body: json({ labels: { k: nul } }) }, async () => (await alice.getProject(projectId)).labels.k);
    add('project git remote', { method: 'POST', path: '/api/v1/projects/register', token: aliceToken, body: json({ name: 'nul-remote', gitRemote: `https://example.com/${nul}.git` }) }, async () => {
      const items = (await alice.listProjects({ limit: 500 })).items;
      return items.find((p) => p.name === 'nul-remote')?.gitRemote?.replace('https://example.com/', '').replace(/\.git$/, '');
    });
    const problems: string[] = [];
    for (const c of cases) {
      const a = await send(c.sent);
      if (a.status >= 200 && a.status < 300) {
        const stored = await c.readBack();
        if (stored !== nul) problems.push(`${c.label}: accepted (${a.status}) but read back ${json(stored)}`);
      } else if (a.status !== 400 || errorCode(a) !== 'validation_error' || errorProblem(a) !== undefined) {
        problems.push(`${c.label}: ${a.status} ${errorCode(a) ?? a.text.slice(0, 120)}`);
      }
    }
    expect(problems).toEqual([]);
  });
});

describe('bad ids, paths, queries and credentials', () => {
  it('answers 400 validation_error for a malformed id in every :id path', async () => {
    const bad = ['not-a-uuid', '123', encodeURIComponent("1' OR '1'='1"), '%00', `${randomUUID()}x`, 'g'.repeat(36), encodeURIComponent('🚀')];
    const routes: Array<{ method: string; path: (id: string) => string; token: string; body?: string }> = [
      { method: 'GET', path: (id) => `/api/v1/agents/${id}`, token: aliceToken },
      { method: 'DELETE', path: (id) => `/api/v1/agents/${id}`, token: aliceToken },
      { method: 'POST', path: (id) => `/api/v1/agents/${id}/stop`, token: aliceToken },
      { method: 'POST', path: (id) => `/api/v1/agents/${id}/token`, token: aliceToken },
      { method: 'POST', path: (id) => `/api/v1/agents/${id}/status`, token: agentToken, body: json({ phase: 'provisioning' }) },
      { method: 'POST', path: (id) => `/api/v1/agents/${id}/token/refresh`, token: agentToken },
      { method: 'POST', path: (id) => `/api/v1/agents/${id}/heartbeat`, token: agentToken },
      { method: 'GET', path: (id) => `/api/v1/templates/${id}`, token: aliceToken },
      { method: 'GET', path: (id) => `/api/v1/templates/${id}/versions/1`, token: aliceToken },
      { method: 'POST', path: (id) => `/api/v1/templates/${id}/versions`, token: aliceToken, body: json({ harness: 'command' }) },
      { method: 'GET', path: (id) => `/api/v1/projects/${id}`, token: aliceToken },
      { method: 'PATCH', path: (id) => `/api/v1/projects/${id}`, token: aliceToken, body: json({ name: 'x' }) },
      { method: 'DELETE', path: (id) => `/api/v1/projects/${id}`, token: aliceToken },
      { method: 'GET', path: (id) => `/api/v1/projects/${id}/members`, token: aliceToken },
      { method: 'PUT', path: (id) => `/api/v1/projects/${projectId}/members/${id}`, token: aliceToken, body: json({ role: 'viewer' }) },
      { method: 'GET', path: (id) => `/api/v1/projects/${id}/secrets`, token: aliceToken },
      { method: 'DELETE', path: (id) => `/api/v1/api-keys/${id}`, token: aliceToken },
    ];
    for (const r of routes) {
      for (const id of bad) {
        const a = await send({ method: r.method, path: r.path(id), token: r.token, ...(r.body === undefined ? {} : { body: r.body }) });
        expectError(a, 400, 'validation_error', `${r.method} ${r.path(id)}`);
      }
    }
  });

  it('answers a path with broken percent-encoding with 400 bad_request', async () => {
    for (const path of ['/api/v1/agents/%E0%A4%A', '/api/v1/templates/%zz', `/api/v1/projects/${projectId}/secrets/%C0`]) {
      expectError(await send({ method: 'GET', path, token: aliceToken }), 400, 'bad_request', path);
    }
  });

  it('answers bad paging parameters with 400 validation_error on every list', async () => {
    const lists = ['/api/v1/agents', '/api/v1/templates', '/api/v1/projects', '/api/v1/api-keys', '/api/v1/users', `/api/v1/projects/${projectId}/members`, `/api/v1/projects/${projectId}/secrets`];
    const queries = ['limit=0', 'limit=501', 'limit=abc', 'limit=-1', 'limit=1.5', 'limit=', 'limit=1e400', 'limit=1&limit=2', 'cursor=garbage', `cursor=${'A'.repeat(600)}`, 'cursor=%E0%A4%A'];
    for (const list of lists) {
      for (const q of queries) expectError(await send({ method: 'GET', path: `${list}?${q}` }), 400, 'validation_error', `${list}?${q}`);
    }
    for (const q of ['projectId=nope', 'userId=1', 'brokerId=%00', 'phase=RUNNING']) {
      expectError(await send({ method: 'GET', path: `/api/v1/agents?${q}` }), 400, 'validation_error', q);
    }
  });

  it('answers bad credentials with 401 unauthorized', async () => {
    const forged = (header: object, payload: object) => `${Buffer.from(json(header)).toString('base64url')}.${Buffer.from(json(payload)).toString('base64url')}.`;
    const headers = [
      'Bearer',
      'Bearer ',
      'Bearer a b',
      'Basic YWxpY2U6c2VjcmV0',
      'Token abc',
      `Bearer ${'x'.repeat(8000)}`,
      `Bearer ${'0'.repeat(64)}`,
      'Bearer a.b.c',
      `Bearer ${forged({ alg: 'none', typ: 'JWT' }, { typ: 'user', sub: aliceUserId })}`,
      `Bearer ${forged({ alg: 'HS256', kid: { $ne: 1 } }, { typ: 'user', sub: aliceUserId })}sig`,
      `Bearer ${forged({ alg: 'HS256', kid: "k' OR '1'='1" }, { typ: 'agent', sub: agent.id, prj: projectId })}sig`,
      `Bearer ${aliceToken.slice(0, -4)}AAAA`,
    ];
    for (const authorization of headers) {
      const a = await send({ method: 'GET', path: '/api/v1/auth/me', token: null, headers: { authorization } });
      expectError(a, 401, 'unauthorized', authorization.slice(0, 60));
    }
  });
});

interface JsonSchema {
  type?: string | string[];
  enum?: unknown[];
  properties?: Record<string, JsonSchema>;
}
interface OpenApiOperation {
  parameters?: Array<{ name: string; in: 'path' | 'query'; schema: JsonSchema }>;
  requestBody?: { content: { 'application/json': { schema: JsonSchema } } };
  security?: unknown[];
}

/** A value of the wrong type for a schema (or outside its enum). */
function wrongType(s: JsonSchema): unknown {
  if (s.enum) return 'not-a-member-of-the-enum';
  switch (Array.isArray(s.type) ? s.type[0] : s.type) {
    case 'string':
      return 12345;
    case 'number':
    case 'integer':
      return 'twelve';
    case 'boolean':
      return 'yes';
    case 'array':
      return { not: 'an array' };
    case 'object':
      return ['not', 'an', 'object'];
    default:
      return { unexpected: [null] };
  }
}

/** Bodies that no route accepts. */
function badBodies(schema: JsonSchema | undefined): string[] {
  const bodies = ['{"unterminated":', '[]', '"text"', 'null', '42', 'true', json({ zzUnknownKey: 1 })];
  if (schema?.properties) {
    const props = Object.entries(schema.properties);
    bodies.push(json(Object.fromEntries(props.map(([k, s]) => [k, wrongType(s)]))));
    bodies.push(json(Object.fromEntries(props.map(([k]) => [k, '🚀'.repeat(40_000)]))));
    bodies.push(json(Object.fromEntries(props.map(([k]) => [k, { $gt: '' }]))));
  }
  return bodies;
}

const BAD_PATH_VALUES = ['not-a-uuid', encodeURIComponent("1' OR '1'='1"), '%00', '%E0%A4%A', 'x'.repeat(3000), encodeURIComponent('🚀'), '%2F'];
const BAD_QUERIES = ['limit=0', 'limit=501', 'limit=abc', 'cursor=garbage', `cursor=${'Z'.repeat(600)}`];

describe('generated corpus over the OpenAPI document', () => {
  it('answers every bad request to every documented route with a 4xx and the standard error body', async () => {
    const doc = (await (await fetch(`${fx.hub.url}/api/v1/openapi.json`)).json()) as { paths: Record<string, Record<string, OpenApiOperation>> };
    const problems: string[] = [];
    const perRoute = new Map<string, number>();
    let sent = 0;
    const probe = async (route: string, s: Sent) => {
      sent += 1;
      const a = await send(s);
      const p = errorProblem(a);
      if (p) problems.push(`${s.method} ${s.path.slice(0, 120)} [${s.body === undefined ? 'no body' : s.body.slice(0, 60)}]: ${p}`);
      else perRoute.set(route, (perRoute.get(route) ?? 0) + 1);
    };
    const probeIgnoredBody = async (route: string, s: Sent) => {
      sent += 1;
      const a = await send(s);
      if (a.status >= 500) problems.push(`${s.method} ${s.path.slice(0, 120)} [ignored body ${String(s.body).slice(0, 60)}]: status ${a.status}`);
      else perRoute.set(route, (perRoute.get(route) ?? 0) + 1);
    };
    const routes = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ path, method: method.toUpperCase(), op })));
    expect(routes.length).toBeGreaterThan(25);

    for (const { path, method, op } of routes) {
      const route = `${method} ${path}`;
      const params = op.parameters ?? [];
      const pathParams = params.filter((p) => p.in === 'path').map((p) => p.name);
      const queryParams = params.filter((p) => p.in === 'query');
      const fill = (bad?: { name: string; value: string }) =>
        path.replace(/\{([A-Za-z_]+)\}/g, (_m, name: string) => {
          if (bad && name === bad.name) return bad.value;
          // Valid-looking values elsewhere, so body and query checks are reached.
          return name === 'name' ? 'SOME_SECRET' : name === 'n' ? '1' : randomUUID();
        });
      const validPath = fill();

      // Routes that take a body reject every one of these; routes that take none ignore whatever
      // body they are sent (HTTP gives it no meaning there), but must never fail on it.
      const bodyProbes: Sent[] = [
        { method, path: validPath, body: '{"broken": ' },
        { method, path: validPath, body: json({ pad: 'p'.repeat(1100 * 1024) }) },
        { method, path: validPath, body: '{}', contentType: 'application/json; charset=ebcdic' },
        { method, path: validPath, body: '{}', headers: { 'content-encoding': 'compress' } },
        { method, path: validPath, body: 'not gzip at all', headers: { 'content-encoding': 'gzip' } },
      ];
      for (const s of bodyProbes) {
        if (op.requestBody) await probe(route, s);
        else await probeIgnoredBody(route, s);
      }
      if (op.security === undefined || op.security.length > 0) {
        await probe(route, { method, path: validPath, token: null, headers: { authorization: 'Bearer not.a.token' } });
        await probe(route, { method, path: validPath, token: null, headers: { authorization: `Bearer ${'f'.repeat(64)}` } });
        await probe(route, { method, path: validPath, token: null });
      }
      for (const name of pathParams) {
        for (const value of BAD_PATH_VALUES) await probe(route, { method, path: fill({ name, value }) });
      }
      if (queryParams.length > 0) {
        for (const q of BAD_QUERIES) await probe(route, { method, path: `${validPath}?${q}` });
        for (const p of queryParams.filter((x) => x.name !== 'limit' && x.name !== 'cursor')) {
          await probe(route, { method, path: `${validPath}?${p.name}=${encodeURIComponent(String(wrongType(p.schema)))}%00` });
        }
      }
      const bodySchema = op.requestBody?.content['application/json'].schema;
      if (bodySchema) {
        for (const body of badBodies(bodySchema)) await probe(route, { method, path: validPath, body });
        await probe(route, { method, path: validPath, body: json({}), contentType: 'text/plain' });
      }
    }
    expect(problems).toEqual([]);
    // Each route got a handful of bad requests that were all answered properly.
    const thin = routes.map((r) => `${r.method} ${r.path}`).filter((r) => (perRoute.get(r) ?? 0) < 4);
    expect(thin).toEqual([]);
    expect(sent).toBeGreaterThan(routes.length * 4);
  });
});

describe('hub log', () => {
  it('recorded no unhandled error while answering all of the above', () => {
    const unhandled = fx.hub.logs.filter((l) => l.event === 'http.unhandled_error');
    expect(unhandled.map((l) => `${String(l.method)} ${String(l.path)}`)).toEqual([]);
  });
});
