import { GraftError, LogStream, ViewerCloseCode } from '@graft/protocol';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import type { Authenticator } from '../auth/authenticator.js';
import type { HubContext } from '../hub-context.js';
import { authorizeRead, chunkJson, followLog, type LogFollower } from '../logs/log-reader.js';
import { type AcceptedSocket, agentPathMatcher, viewerPrincipal, type WsRoute } from './ws-route.js';

/** A reader holding more than this unsent waits (the log is re-read from storage, nothing is buffered). */
const HIGH_WATER = 1024 * 1024;
const DRAIN_POLL_MS = 20;

const LogSocketQuery = z.object({
  since: z.coerce.number().int().min(0).optional(),
  stream: LogStream.exclude(['system']).optional(),
  token: z.string().optional(),
});

/**
 * `GET /api/v1/agents/:id/logs` with a WebSocket upgrade: the log from `?since=` (optionally one
 * `?stream=`) as JSON text frames `{seq, stream, at, data}` (the SSE events' content), followed live,
 * then `{type:"end", lastSeq}` and close 1000 once the log is complete. Read like the HTTP route
 * (same reader, same authorisation: agents their own log, users the agents they may see).
 */
export function logSocketRoute(deps: { ctx: HubContext; authenticator: Authenticator }): WsRoute {
  const { ctx } = deps;
  return {
    name: 'logs',
    match: agentPathMatcher('logs'),
    accept: async (req, params, url): Promise<AcceptedSocket> => {
      const agentId = params[0] ?? '';
      const principal = await viewerPrincipal(deps.authenticator, req, url, 'read');
      const query = LogSocketQuery.safeParse(Object.fromEntries(url.searchParams));
      if (!query.success) throw new GraftError('validation_error', 'since must be a whole number ≥ 0 and stream stdout or stderr');
      await authorizeRead(ctx, principal, agentId);
      const { stream } = query.data;
      return {
        abandon: () => {},
        connected: (ws: WebSocket) => {
          let since = query.data.since ?? 0;
          let sent = 0;
          const client: LogFollower = {
            onGone: (listener) => {
              ws.once('close', listener);
              ws.once('error', listener);
            },
            needsDrain: () => ws.bufferedAmount > HIGH_WATER,
            drained: () =>
              new Promise<void>((resolve) => {
                const poll = setInterval(() => {
                  if (ws.readyState !== ws.OPEN || ws.bufferedAmount <= HIGH_WATER / 4) {
                    clearInterval(poll);
                    resolve();
                  }
                }, DRAIN_POLL_MS);
              }),
          };
          void followLog(ctx, agentId, client, () => since, (chunks) => {
            for (const c of chunks) {
              if (c.seq <= since) continue;
              since = c.seq;
              if (stream !== undefined && c.stream !== stream && c.stream !== 'system') continue;
              sent += c.data.length;
              if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(chunkJson(c)));
            }
          })
            .then((ended) => {
              if (!ended || ws.readyState !== ws.OPEN) return;
              ws.send(JSON.stringify({ type: 'end', lastSeq: since }));
              ws.close(ViewerCloseCode.normal, 'log complete');
            })
            .catch((err: unknown) => {
              ctx.log.error('logs.socket_failed', { agentId, err });
              if (ws.readyState === ws.OPEN) ws.close(ViewerCloseCode.internalError, 'reading the log failed');
            })
            .finally(() => ctx.metrics.logBytes.inc({ what: 'read' }, sent));
        },
      };
    },
  };
}
