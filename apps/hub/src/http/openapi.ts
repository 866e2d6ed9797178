import { ErrorBody } from '@graft/protocol';
import { z } from 'zod';
import type { RouteSpec } from './route.js';

type JsonSchema = Record<string, unknown>;

function schema(s: z.ZodType): JsonSchema {
  const { $schema: _drop, ...rest } = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

function parameters(s: z.ZodType | undefined, where: 'path' | 'query'): JsonSchema[] {
  if (!s) return [];
  const js = schema(s) as { properties?: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(js.properties ?? {}).map(([name, p]) => ({
    name,
    in: where,
    required: where === 'path' || (js.required ?? []).includes(name),
    schema: p,
  }));
}

/** Builds the OpenAPI 3.1 document from the same zod schemas that validate requests. */
export function buildOpenApi(routes: readonly RouteSpec[], version: string): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  const errorResponse = { description: 'Error', content: { 'application/json': { schema: schema(ErrorBody) } } };
  for (const r of routes) {
    const path = r.path.replace(/:([A-Za-z_]+)/g, '{$1}');
    const responses: Record<string, JsonSchema> = {};
    for (const [status, s] of Object.entries(r.responses)) {
      responses[status] = s ? { description: 'OK', content: { 'application/json': { schema: schema(s) } } } : { description: 'No content' };
    }
    responses.default = errorResponse;
    const op: JsonSchema = {
      summary: r.summary,
      tags: [r.tag],
      operationId: `${r.method}${path.replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ?? '').toUpperCase())}`,
      parameters: [...parameters(r.params, 'path'), ...parameters(r.query, 'query')],
      responses,
      ...(r.auth === 'none' ? { security: [] } : r.auth === 'broker' ? { security: [{ brokerSignature: [] }] } : {}),
    };
    if (r.body) op.requestBody = { required: true, content: { 'application/json': { schema: schema(r.body) } } };
    paths[path] = { ...(paths[path] ?? {}), [r.method]: op };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Graft Hub API', version },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'API key (64 hex chars), user JWT or agent JWT' },
        brokerSignature: {
          type: 'apiKey',
          in: 'header',
          name: 'X-Graft-Signature',
          description: 'HMAC-SHA256 request signature with X-Graft-Broker-Id, X-Graft-Timestamp and X-Graft-Nonce (packages/protocol/PROTOCOL.md)',
        },
      },
    },
    security: [{ bearer: [] }],
    paths,
  };
}
