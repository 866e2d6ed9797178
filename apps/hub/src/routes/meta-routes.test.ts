import { GraftClient } from '@graft/client';
import { type HubFixture, startHubFixture } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

let fx: HubFixture;
let base: string;

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  base = fx.hub.url;
});
afterAll(async () => {
  await fx?.stop();
});

describe('meta routes', () => {
  it('GET /healthz answers without auth with status, version and uptime', async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    const body: unknown = await res.json();
    expect(body).toEqual({ status: 'ok', version: expect.any(String), uptimeSecs: expect.any(Number) });
  });

  it('GET /readyz reports the database as ok', async () => {
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready', checks: { database: 'ok' } });
  });

  it('GET /metrics exposes request latency by route and agents by phase', async () => {
    const client = new GraftClient({ baseUrl: base, token: fx.hub.adminToken });
    await client.me();
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/graft_http_request_duration_seconds_bucket\{[^}]*route="\/api\/v1\/auth\/me"/);
    expect(text).toContain('# TYPE graft_agents gauge');
    expect(text).toContain('process_cpu_seconds_total');
  });

  it('serves an OpenAPI 3.1 document that lists every route with its schemas', async () => {
    const doc = (await (await fetch(`${base}/api/v1/openapi.json`)).json()) as {
      openapi: string;
      paths: Record<string, Record<string, { requestBody?: unknown; parameters?: Array<{ name: string }> }>>;
    };
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.paths['/api/v1/agents/{id}/status']?.post?.requestBody).toBeDefined();
    expect(doc.paths['/api/v1/agents/{id}']?.get?.parameters?.map((p) => p.name)).toEqual(['id']);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/api/v1/projects/register', '/api/v1/templates/{id}/versions/{n}', '/api/v1/api-keys/{id}']));
  });

  it('answers unknown routes with the standard not_found body', async () => {
    const res = await fetch(`${base}/api/v1/nope`);
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: { code: string; requestId: string } };
    expect(body.error.code).toBe('not_found');
    expect(body.error.requestId).toBe(res.headers.get('x-request-id'));
  });
});
