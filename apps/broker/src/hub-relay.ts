import { chmod, mkdir, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, request as httpRequest, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { Logger } from '@graft/log';
import type { ErrorBody, ErrorCode } from '@graft/protocol';

/** Paths an agent may reach through the relay: its own API (the hub authorises by agent token) and health. */
const ALLOWED = [/^\/api\/v1\/agents\//, /^\/healthz$/];

/** Headers that describe one hop, not the request. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

/** A running relay. */
export interface HubRelay {
  /** The socket agents connect to (`<runDir>/hub.sock`). */
  socketPath: string;
  close(): Promise<void>;
}

function sendError(res: ServerResponse, status: number, code: ErrorCode, message: string): void {
  const body: ErrorBody = { error: { code, message, requestId: 'relay' } };
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/**
 * Serves `<runDir>/hub.sock`, an HTTP relay from agents to the hub (DESIGN §5): runtimes mount the
 * directory into every sandbox and container, so `graft-agent` reaches the hub even when the
 * agent has no network. Only agent endpoints pass; the agent's own token authorises each request
 * at the hub, so the relay adds no authority of its own.
 */
export async function startHubRelay(options: { runDir: string; hubUrl: string; log: Logger }): Promise<HubRelay> {
  const hub = new URL(options.hubUrl);
  const send = hub.protocol === 'https:' ? httpsRequest : httpRequest;
  const basePath = hub.pathname.replace(/\/+$/, '');
  await mkdir(options.runDir, { recursive: true, mode: 0o755 });
  await chmod(options.runDir, 0o755);
  const socketPath = join(options.runDir, 'hub.sock');
  // A socket file left by a broker that died cannot be listened on again.
  await rm(socketPath, { force: true });

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? '/';
    const pathname = path.split('?')[0] ?? '/';
    if (!ALLOWED.some((re) => re.test(pathname))) {
      sendError(res, 404, 'not_found', `the relay forwards only agent endpoints (/api/v1/agents/...), not ${pathname}`);
      req.resume();
      return;
    }
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.has(k) && k !== 'host') headers[k] = v;
    const upstream = send(
      { protocol: hub.protocol, hostname: hub.hostname, port: hub.port, method: req.method, path: `${basePath}${path}`, headers },
      (answer) => {
        const back: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(answer.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) back[k] = v;
        res.writeHead(answer.statusCode ?? 502, back);
        answer.pipe(res);
      },
    );
    upstream.once('error', (err) => {
      options.log.warn('relay.hub_unreachable', { path: pathname, reason: err.message });
      if (!res.headersSent) sendError(res, 502, 'unavailable', `the broker cannot reach the hub at ${options.hubUrl}: ${err.message}`);
      else res.destroy();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Agents may run as other users inside their containers.
  await chmod(socketPath, 0o777);
  options.log.info('relay.listening', { socketPath, hubUrl: options.hubUrl });
  return {
    socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
