import { randomUUID } from 'node:crypto';
import type { Logger } from '@graft/log';
import { GraftError } from '@graft/protocol';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Authenticator } from '../auth/authenticator.js';
import type { BrokerAuthenticator } from '../auth/broker-authenticator.js';
import type { Principal } from '../auth/principal.js';
import { errorMiddleware, sendError } from './error-middleware.js';
import type { InFlight } from './in-flight.js';
import type { HubMetrics } from './metrics.js';
import { findNul } from './nul-check.js';
import { initRequestState, requestState } from './request-context.js';
import { RawJson, type RouteSpec } from './route.js';
import { validate } from './validate.js';

/** What the HTTP app needs from the rest of the hub. */
export interface AppDeps {
  routes: readonly RouteSpec[];
  /** Whether the database answers right now (tells an outage from a bug when an error says neither). */
  databaseAnswers?: () => Promise<boolean>;
  inFlight: InFlight;
  authenticator: Authenticator;
  brokerAuthenticator: BrokerAuthenticator;
  metrics: HubMetrics;
  log: Logger;
}

const REQUEST_ID_RE = /^[A-Za-z0-9._-]{1,128}$/;
const BODY_LIMIT = '1mb';

function authorise(spec: RouteSpec, principal: Principal): void {
  if (spec.auth === 'none') return;
  if (principal.kind === 'anonymous') throw new GraftError('unauthorized', 'authentication required: send "Authorization: Bearer <token>"');
  if (spec.auth === 'user' && principal.kind !== 'user') throw new GraftError('forbidden', 'this endpoint is for users, not agents');
  if (spec.auth === 'agent' && principal.kind !== 'agent') throw new GraftError('forbidden', 'this endpoint is for agent tokens only');
  if (principal.kind === 'broker' && spec.auth !== 'broker') throw new GraftError('forbidden', 'brokers may only call broker endpoints');
  if (principal.kind === 'user' && principal.via === 'api_key') {
    const needed = spec.method === 'get' ? 'read' : 'write';
    if (!principal.scopes.includes(needed)) throw new GraftError('forbidden', `this API key lacks the "${needed}" scope`);
  }
}

/** Builds the express app: request ids, metrics, JSON parsing, auth, validated routes, errors. */
export function createApp(deps: AppDeps): express.Express {
  const { log, metrics, authenticator } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  app.use((req: Request, res: Response, next: NextFunction) => {
    const incoming = req.get('x-request-id');
    const requestId = incoming && REQUEST_ID_RE.test(incoming) ? incoming : randomUUID();
    initRequestState(req, { requestId, principal: { kind: 'anonymous' }, routePattern: undefined });
    res.setHeader('X-Request-Id', requestId);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const s = requestState(req);
      const secs = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.httpDuration.observe({ method: req.method, route: s.routePattern ?? 'unmatched', status: String(res.statusCode) }, secs);
      if (res.statusCode >= 500) log.warn('http.request_failed', { requestId, method: req.method, route: s.routePattern, status: res.statusCode, ms: secs * 1000 });
      else log.debug('http.request', { requestId, method: req.method, route: s.routePattern, status: res.statusCode, ms: secs * 1000 });
    });
    next();
  });

  // Parsed only on routes that take a body: most traffic (reads) never pays for the parser.
  const json = express.json({ limit: BODY_LIMIT, strict: false });
  // Signatures cover the bytes as sent, so broker routes keep them next to the parsed JSON.
  const signedJson = express.json({
    limit: BODY_LIMIT,
    strict: false,
    verify: (req, _res, buf) => {
      requestState(req as Request).rawBody = Buffer.from(buf);
    },
  });
  const noBody = (_req: Request, _res: Response, next: NextFunction) => next();

  for (const spec of deps.routes) {
    const parse = spec.body ? (spec.auth === 'broker' ? signedJson : json) : noBody;
    app[spec.method](spec.path, parse, (req: Request, res: Response) => deps.inFlight.track(() => handle(spec, req, res)));
  }

  /** Authenticates, authorises and validates one request, then runs its handler. */
  async function handle(spec: RouteSpec, req: Request, res: Response): Promise<void> {
    const state = requestState(req);
    state.routePattern = spec.path;
    if (spec.body && req.headers['content-length'] !== '0' && req.body === undefined && req.headers['content-type']) {
      throw new GraftError('unsupported_media_type', `Content-Type must be application/json (got ${req.headers['content-type']})`);
    }
    const principal =
      spec.auth === 'none'
        ? ({ kind: 'anonymous' } as const)
        : spec.auth === 'broker'
          ? await deps.brokerAuthenticator.authenticate({ method: req.method, target: req.originalUrl, headers: req.headers, rawBody: state.rawBody })
          : await authenticator.authenticate(req.get('authorization'));
    state.principal = principal;
    authorise(spec, principal);
    const nulAt = findNul(req.params, 'params') ?? findNul(req.query, 'query') ?? (spec.body ? findNul(req.body, 'body') : undefined);
    if (nulAt) {
      const part = nulAt.split('.')[0];
      throw new GraftError('validation_error', `invalid ${part}: ${nulAt}: must not contain NUL characters`, {
        issues: [{ path: nulAt, message: 'must not contain NUL characters', code: 'invalid_string' }],
      });
    }
    const params = spec.params ? validate(spec.params, req.params, 'params') : {};
    const query = spec.query ? validate(spec.query, req.query, 'query') : {};
    // No body at all reads as {} (all-optional bodies); an explicit JSON null is validated as sent.
    const body = spec.body ? validate(spec.body, req.body === undefined ? {} : req.body, 'body') : undefined;
    const result = await spec.handler({ params, query, body, principal, requestId: state.requestId, req, res });
    if (result === undefined) return;
    if (result.body === undefined) res.status(result.status).end();
    else if (result.body instanceof RawJson) res.status(result.status).type('application/json').send(result.body.text);
    else res.status(result.status).json(result.body);
  }


  app.use((req: Request, res: Response) => {
    sendError(res, requestState(req).requestId, 'not_found', `no route for ${req.method} ${req.path}`);
  });
  app.use(errorMiddleware(log, deps.databaseAnswers));
  return app;
}
