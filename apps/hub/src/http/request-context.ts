import type { Request } from 'express';
import type { Principal } from '../auth/principal.js';

/** Per-request values the middleware chain attaches. */
export interface RequestState {
  requestId: string;
  principal: Principal;
  /** The route pattern that matched, for metrics labels. */
  routePattern: string | undefined;
  /** The body's bytes as received, kept on broker routes: signatures cover them, not the parsed JSON. */
  rawBody?: Buffer;
}

const states = new WeakMap<Request, RequestState>();

/** Attaches request state (called once, by the first middleware). */
export function initRequestState(req: Request, state: RequestState): void {
  states.set(req, state);
}

/** Reads the request state attached by the first middleware. */
export function requestState(req: Request): RequestState {
  const s = states.get(req);
  if (!s) throw new Error('request state missing: initRequestState must run first');
  return s;
}
