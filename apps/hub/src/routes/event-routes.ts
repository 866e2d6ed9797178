import { EventStreamQuery, GraftError, HubEvent, IdParams } from '@graft/protocol';
import type { Request, Response } from 'express';
import { requireAdmin, requireProjectRole } from '../domain/access.js';
import { BROKER_EVENTS_TOPIC, projectEventsTopic } from '../events/hub-event-topics.js';
import type { HubContext } from '../hub-context.js';
import { route, type RouteSpec } from '../http/route.js';

/** A comment line on idle streams, so proxies keep them open. */
const KEEPALIVE_MS = 15_000;
/** Events a slow reader may leave unread before it is cut off (it reconnects and re-reads the resources). */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/**
 * Streams one bus topic to the caller as Server-Sent Events (`event: <type>`, `data: <json>`) until
 * the client goes or `maxSecs` pass. Every message is validated before it is sent on.
 */
async function streamTopic(ctx: HubContext, topic: string, maxSecs: number | undefined, req: Request, res: Response): Promise<undefined> {
  res.status(200);
  res.setHeader('content-type', 'text/event-stream; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.setHeader('x-accel-buffering', 'no');
  res.flushHeaders();
  await new Promise<void>((done) => {
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      off();
      clearInterval(keepalive);
      clearTimeout(limit);
      if (!res.writableEnded) res.end();
      done();
    };
    const off = ctx.logs.events.subscribe(topic, (message) => {
      let json: unknown;
      try {
        json = JSON.parse(message.toString('utf8'));
      } catch {
        return;
      }
      const event = HubEvent.safeParse(json);
      if (!event.success) return;
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        ctx.log.warn('events.reader_too_slow', { topic });
        finish();
        return;
      }
      res.write(`event: ${event.data.type}\ndata: ${JSON.stringify(event.data)}\n\n`);
    });
    const keepalive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS);
    const limit = maxSecs === undefined ? undefined : setTimeout(finish, maxSecs * 1000);
    req.once('close', finish);
    res.once('close', finish);
  });
  return undefined;
}

/**
 * Live event streams (Server-Sent Events), fed by the event bus, so a reader on any replica sees
 * changes made on any other: `GET /api/v1/projects/:id/events` (agent state changes of the
 * project; role viewer) and `GET /api/v1/admin/broker-events` (brokers' tunnels coming and going;
 * platform admins). Best effort: a reader that reconnects re-reads the resources for what it missed.
 */
export function eventRoutes(ctx: HubContext): RouteSpec[] {
  return [
    route({
      method: 'get',
      path: '/api/v1/projects/:id/events',
      summary: "The project's agent state changes, live (Server-Sent Events, `event: agent.state`); maxSecs ends the stream",
      tag: 'projects',
      auth: 'user',
      params: IdParams,
      query: EventStreamQuery,
      responses: { 200: null },
      handler: async ({ params, query, principal, req, res }) => {
        await requireProjectRole(ctx.db, principal, params.id, 'viewer');
        // Platform admins pass the role check for any id: a project that does not exist is still 404.
        const exists = await ctx.db.selectFrom('projects').select('id').where('id', '=', params.id).executeTakeFirst();
        if (!exists) throw new GraftError('not_found', 'project not found');
        return streamTopic(ctx, projectEventsTopic(params.id), query.maxSecs, req, res);
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/admin/broker-events',
      summary: 'Broker tunnels connecting to and leaving hub replicas, live (Server-Sent Events, `event: broker.presence`); platform admins',
      tag: 'brokers',
      auth: 'user',
      query: EventStreamQuery,
      responses: { 200: null },
      handler: async ({ query, principal, req, res }) => {
        requireAdmin(principal);
        return streamTopic(ctx, BROKER_EVENTS_TOPIC, query.maxSecs, req, res);
      },
    }),
  ];
}
