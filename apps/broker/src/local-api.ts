import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '@graft/log';
import {
  ATTACH_PATH_PATTERN,
  AttachQuery,
  type CommandErrorCode,
  DesiredAgent,
  type ErrorCode,
  errorStatus,
  MemoryNonceCache,
  readBrokerId,
  splitRequestTarget,
  verifySignedRequest,
} from '@graft/protocol';
import express, { type Request, type Response } from 'express';
import { WebSocketServer } from 'ws';
import type { AgentSupervisor } from './agent-supervisor.js';
import type { BrokerMetrics } from './broker-metrics.js';
import { bridgeTerminalSocket } from './terminal-socket.js';

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

/** Refuses a WebSocket upgrade with the API's error body, before any upgrade. */
function refuseUpgrade(socket: Duplex, code: ErrorCode, message: string, details?: Record<string, unknown>): void {
  const body = JSON.stringify({ error: { code, message, ...(details ? { details } : {}), requestId: randomUUID() } });
  const status = errorStatus[code];
  socket.end(`HTTP/1.1 ${status} Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/** How a refused terminal shows in the local API. */
const TERMINAL_REFUSAL: Record<CommandErrorCode, ErrorCode> = {
  unknown_agent: 'not_found',
  invalid: 'conflict',
  no_runtime: 'conflict',
  no_capacity: 'conflict',
  stale_generation: 'conflict',
  runtime_failed: 'internal_error',
};

/**
 * The broker's local API (127.0.0.1:9800 by default): health, metrics, what runs here, and the
 * create path the tunnel uses, for requests signed by the hub with this broker's secret; also
 * `GET /api/v1/agents/:id/attach`, a signed WebSocket upgrade to a terminal in a running agent
 * (the same viewer protocol as the hub's attach).
 */
export async function startLocalApi(deps: LocalApiDeps): Promise<LocalApi> {
  const app = express();
  app.disable('x-powered-by');
  const nonces = new MemoryNonceCache();
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });

  /** Checks the hub's signature; the error to answer with, or null when the request is the hub's. */
  const verify = async (method: string, target: string, headers: IncomingHttpHeaders, body: Buffer): Promise<{ code: ErrorCode; message: string } | null> => {
    const { path, rawQuery } = splitRequestTarget(target);
    // The hub signs with this broker's own secret, naming this broker: anything else is not for us.
    const named = readBrokerId(headers);
    const verdict = await verifySignedRequest({ method, path, rawQuery, body, headers, secrets: named === deps.brokerId ? [deps.secretKey] : [], nonceCache: nonces });
    if (verdict.ok) return null;
    const code: Record<typeof verdict.reason, ErrorCode> = {
      missing_headers: 'signature_missing',
      malformed_headers: 'signature_malformed',
      clock_skew: 'clock_skew',
      bad_signature: 'signature_invalid',
      replayed_nonce: 'replayed_request',
    };
    return { code: code[verdict.reason], message: `request refused: ${verdict.reason.replace('_', ' ')}` };
  };

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
    const refused = await verify(req.method, req.originalUrl, req.headers, rawBody);
    if (refused) return sendError(res, refused.code, refused.message);
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
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    void (async () => {
      const target = req.url ?? '';
      const match = ATTACH_PATH_PATTERN.exec(splitRequestTarget(target).path);
      if (!match?.[1]) return refuseUpgrade(socket, 'not_found', 'no WebSocket endpoint here');
      const refused = await verify(req.method ?? 'GET', target, req.headers, Buffer.alloc(0));
      if (refused) return refuseUpgrade(socket, refused.code, refused.message);
      const query = AttachQuery.safeParse(Object.fromEntries(new URL(target, 'http://broker').searchParams));
      if (!query.success) return refuseUpgrade(socket, 'validation_error', 'cols and rows must be whole numbers from 1 to 1000');
      const agentId = decodeURIComponent(match[1]);
      const outcome = await deps.supervisor.openTerminal(agentId, { cols: query.data.cols, rows: query.data.rows });
      if (!outcome.ok) return refuseUpgrade(socket, TERMINAL_REFUSAL[outcome.code], outcome.message, { reason: outcome.code });
      const terminal = outcome.terminal;
      // The viewer may have gone while the terminal opened.
      if (socket.destroyed) return terminal.close();
      wss.handleUpgrade(req, socket, head, (ws) => bridgeTerminalSocket(ws, terminal));
    })().catch((err: unknown) => {
      deps.log.error('local_api.attach_failed', { err });
      refuseUpgrade(socket, 'internal_error', 'could not open the terminal');
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${deps.host.includes(':') ? `[${deps.host}]` : deps.host}:${port}`;
  return {
    url,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
