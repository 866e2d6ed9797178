import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '@graft/log';
import { DesiredAgent, type ErrorCode, errorStatus, MemoryNonceCache, readBrokerId, splitRequestTarget, verifySignedRequest } from '@graft/protocol';
import express, { type Request, type Response } from 'express';
import type { AgentSupervisor } from './agent-supervisor.js';
import type { BrokerMetrics } from './broker-metrics.js';

/** What the local API needs. */
export interface LocalApiDeps {
  host: string;
  port: number;
  brokerId: string;
  secretKey: string;
  supervisor: AgentSupervisor;
  metrics: BrokerMetrics;
  tunnelUp: () => boolean;
  version: string;
  log: Logger;
}

/** A running local API. */
export interface LocalApi {
  url: string;
  port: number;
  close(): Promise<void>;
}

function sendError(res: Response, code: ErrorCode, message: string, details?: Record<string, unknown>): void {
  res.status(errorStatus[code]).json({ error: { code, message, ...(details ? { details } : {}), requestId: randomUUID() } });
}

/**
 * The broker's local API (127.0.0.1:9800 by default): health, metrics, what runs here, and the
 * create path the tunnel uses, for requests signed by the hub with this broker's secret.
 */
export async function startLocalApi(deps: LocalApiDeps): Promise<LocalApi> {
  const app = express();
  app.disable('x-powered-by');
  const nonces = new MemoryNonceCache();

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', brokerId: deps.brokerId, version: deps.version, tunnel: deps.tunnelUp() ? 'up' : 'down', load: deps.supervisor.load() });
  });
  app.get('/metrics', async (_req, res) => {
    res.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
  app.get('/api/v1/agents', (_req, res) => {
    res.json({ items: deps.supervisor.list() });
  });
  app.post('/api/v1/agents', express.raw({ type: () => true, limit: '1mb' }), async (req: Request, res: Response) => {
    const rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const { path, rawQuery } = splitRequestTarget(req.originalUrl);
    // The hub signs with this broker's own secret, naming this broker: anything else is not for us.
    const named = readBrokerId(req.headers);
    const verdict = await verifySignedRequest({
      method: req.method,
      path,
      rawQuery,
      body: rawBody,
      headers: req.headers,
      secrets: named === deps.brokerId ? [deps.secretKey] : [],
      nonceCache: nonces,
    });
    if (!verdict.ok) {
      const code: Record<typeof verdict.reason, ErrorCode> = {
        missing_headers: 'signature_missing',
        malformed_headers: 'signature_malformed',
        clock_skew: 'clock_skew',
        bad_signature: 'signature_invalid',
        replayed_nonce: 'replayed_request',
      };
      return sendError(res, code[verdict.reason], `request refused: ${verdict.reason.replace('_', ' ')}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(rawBody.toString('utf8'));
    } catch {
      return sendError(res, 'bad_request', 'body must be JSON');
    }
    const parsed = DesiredAgent.safeParse(json);
    if (!parsed.success) {
      return sendError(res, 'validation_error', 'body is not a desired agent', { issues: parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) });
    }
    const outcome = await deps.supervisor.command('create', parsed.data);
    if (!outcome.ok) return sendError(res, outcome.code === 'runtime_failed' ? 'internal_error' : 'conflict', outcome.message, { reason: outcome.code });
    res.status(202).json({ agent: outcome.agent });
  });
  app.use((_req: Request, res: Response) => sendError(res, 'not_found', 'no such endpoint on the broker'));

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(deps.port, deps.host, () => resolve(s));
    s.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new Error(`port ${deps.port} on ${deps.host} is in use (another broker?): set GRAFT_BROKER_PORT or --port, 0 picks a free one`) : err),
    );
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${deps.host.includes(':') ? `[${deps.host}]` : deps.host}:${port}`;
  return {
    url,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
