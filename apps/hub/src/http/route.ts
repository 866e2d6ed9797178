import type { Request, Response } from 'express';
import type { z } from 'zod';
import type { Principal } from '../auth/principal.js';

/** Who may call a route at all; finer checks happen in the handler. `broker`: an HMAC-signed request. */
export type RouteAuth = 'none' | 'user' | 'agent' | 'any' | 'broker';

/** What a handler sees: validated input and the caller. */
export interface RouteContext<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  principal: Principal;
  requestId: string;
  req: Request;
  res: Response;
}

/** A response body that is already JSON text (built by Postgres); sent as is. */
export class RawJson {
  constructor(readonly text: string) {}
}

/** A handler's answer; `undefined` means it wrote the response itself (streams, redirects). */
export type RouteResult = { status: number; body?: unknown } | undefined;

/** One REST route: schemas for what comes in and goes out, and the handler. */
export interface RouteSpec<P extends z.ZodType = z.ZodType, Q extends z.ZodType = z.ZodType, B extends z.ZodType = z.ZodType> {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Express-style path, e.g. `/api/v1/agents/:id`. */
  path: string;
  summary: string;
  tag: string;
  auth: RouteAuth;
  params?: P;
  query?: Q;
  body?: B;
  /** Response schemas by status; null for an empty body. */
  responses: Record<number, z.ZodType | null>;
  handler: (ctx: RouteContext<z.output<P>, z.output<Q>, z.output<B>>) => Promise<RouteResult>;
}

/** Declares a route with its types inferred from its schemas. */
export function route<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(spec: RouteSpec<P, Q, B>): RouteSpec {
  return spec as unknown as RouteSpec;
}
