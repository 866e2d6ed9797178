import { Health, Readiness } from '@graft/protocol';
import { sql } from 'kysely';
import { z } from 'zod';
import type { HubContext } from '../hub-context.js';
import { buildOpenApi } from '../http/openapi.js';
import { route, type RouteSpec } from '../http/route.js';

/** Health, readiness, metrics and the OpenAPI document (which describes every route given). */
export function metaRoutes(ctx: HubContext, allRoutes: () => readonly RouteSpec[]): RouteSpec[] {
  let openapi: unknown;
  return [
    route({
      method: 'get',
      path: '/healthz',
      summary: 'Liveness: the process is up',
      tag: 'meta',
      auth: 'none',
      responses: { 200: Health },
      handler: async () => ({ status: 200, body: { status: 'ok', version: ctx.version, uptimeSecs: Math.round((Date.now() - ctx.startedAt) / 1000) } }),
    }),
    route({
      method: 'get',
      path: '/readyz',
      summary: 'Readiness: the database answers',
      tag: 'meta',
      auth: 'none',
      responses: { 200: Readiness, 503: Readiness },
      handler: async () => {
        const ok = await sql`SELECT 1`.execute(ctx.db).then(
          () => true,
          () => false,
        );
        return { status: ok ? 200 : 503, body: { status: ok ? 'ready' : 'unavailable', checks: { database: ok ? 'ok' : 'failed' } } };
      },
    }),
    route({
      method: 'get',
      path: '/metrics',
      summary: 'Prometheus metrics',
      tag: 'meta',
      auth: 'none',
      responses: { 200: z.string() },
      handler: async ({ res }) => {
        const text = await ctx.metrics.registry.metrics();
        res.setHeader('Content-Type', ctx.metrics.registry.contentType);
        res.status(200).send(text);
        return undefined;
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/openapi.json',
      summary: 'This API as an OpenAPI 3.1 document',
      tag: 'meta',
      auth: 'none',
      responses: { 200: z.record(z.string(), z.unknown()) },
      handler: async () => {
        openapi ??= buildOpenApi(allRoutes(), ctx.version);
        return { status: 200, body: openapi };
      },
    }),
  ];
}
