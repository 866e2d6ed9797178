import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraftApiError, GraftClient } from '@graft/client';
import { createLogger } from '@graft/log';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HubRelay, startHubRelay } from './hub-relay.js';

const quiet = createLogger({ sink: () => {} });

describe('hub relay', () => {
  let dir: string;
  let upstream: Server;
  let relay: HubRelay;
  const seen: Array<{ method: string; url: string; authorization: string | undefined; body: string }> = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'graft-relay-'));
    // Stands in for the hub: answers what it received, so the test sees exactly what was forwarded.
    upstream = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        body += c;
      });
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, body });
        if (req.url?.includes('missing')) {
          res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'not_found', message: 'agent not found', requestId: 'r1' } }));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'r2' }).end(JSON.stringify({ echoed: JSON.parse(body || 'null') }));
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const { port } = upstream.address() as AddressInfo;
    relay = await startHubRelay({ runDir: join(dir, 'run'), hubUrl: `http://127.0.0.1:${port}/`, log: quiet });
  });

  afterAll(async () => {
    await relay.close();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('forwards agent requests with method, path, query, token and body, and answers the hub response', async () => {
    const client = new GraftClient({ baseUrl: 'http://graft-hub', token: 'agent-token', socketPath: relay.socketPath });
    const answer = await client.request<{ echoed: unknown }>('POST', '/api/v1/agents/a1/status', { body: { activity: 'thinking' }, query: { x: 1 } });
    expect(answer).toEqual({ echoed: { activity: 'thinking' } });
    expect(seen.at(-1)).toEqual({ method: 'POST', url: '/api/v1/agents/a1/status?x=1', authorization: 'Bearer agent-token', body: '{"activity":"thinking"}' });
  });

  it('passes the hub error body through', async () => {
    const client = new GraftClient({ baseUrl: 'http://graft-hub', token: 't', socketPath: relay.socketPath });
    const err = await client.request('GET', '/api/v1/agents/missing/messages').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GraftApiError);
    expect(err).toMatchObject({ status: 404, code: 'not_found', message: 'agent not found' });
  });

  it('refuses paths outside the agent API without asking the hub', async () => {
    const before = seen.length;
    const client = new GraftClient({ baseUrl: 'http://graft-hub', token: 't', socketPath: relay.socketPath });
    const err = await client.request('GET', '/api/v1/projects').catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 404, code: 'not_found' });
    expect((err as Error).message).toContain('only agent endpoints');
    expect(seen.length).toBe(before);
  });

  it('answers 502 unavailable when the hub cannot be reached', async () => {
    const spare = createServer();
    await new Promise<void>((resolve) => spare.listen(0, '127.0.0.1', resolve));
    const { port } = spare.address() as AddressInfo;
    await new Promise<void>((resolve) => spare.close(() => resolve()));
    const away = await startHubRelay({ runDir: join(dir, 'run-away'), hubUrl: `http://127.0.0.1:${port}`, log: quiet });
    try {
      const client = new GraftClient({ baseUrl: 'http://graft-hub', token: 't', socketPath: away.socketPath });
      await expect(client.request('GET', '/api/v1/agents/a1/messages')).rejects.toMatchObject({ status: 502, code: 'unavailable' });
    } finally {
      await away.close();
    }
  });

  it('a client whose socket does not exist gets a network_error naming it', async () => {
    const client = new GraftClient({ baseUrl: 'http://graft-hub', token: 't', socketPath: join(dir, 'nothing.sock') });
    const err = await client.request('GET', '/api/v1/agents/a1/messages').catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 0, code: 'network_error' });
    expect((err as Error).message).toContain('nothing.sock');
  });
});
