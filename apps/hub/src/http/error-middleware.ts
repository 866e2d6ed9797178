import type { Logger } from '@graft/log';
import { type ErrorBody, type ErrorCode, errorStatus, GraftError } from '@graft/protocol';
import type { NextFunction, Request, Response } from 'express';
import { requestState } from './request-context.js';

/** Errors body-parser raises carry a `type`; this maps the ones a client can cause, then falls back to the status. */
function fromBodyParser(err: unknown): GraftError | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  if (!('type' in err)) return fromClientStatus(err);
  switch ((err as { type: unknown }).type) {
    case 'entity.parse.failed':
      return new GraftError('bad_request', 'request body is not valid JSON');
    case 'entity.too.large':
      return new GraftError('payload_too_large', 'request body exceeds the 1 MiB limit');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new GraftError('unsupported_media_type', 'unsupported body encoding or charset');
    case 'request.aborted':
      return new GraftError('bad_request', 'request aborted by the client');
    default:
      return fromClientStatus(err);
  }
}

/**
 * body-parser and the router raise http-errors with a 4xx `status` for client faults they do not
 * tag with a `type` (a body that fails to decompress, a malformed percent-encoding in the path).
 * The status is the classification; map it to our codes.
 */
function fromClientStatus(err: object): GraftError | undefined {
  const status = (err as { status?: unknown; statusCode?: unknown }).status ?? (err as { statusCode?: unknown }).statusCode;
  if (typeof status !== 'number' || status < 400 || status > 499) return undefined;
  if (status === 413) return new GraftError('payload_too_large', 'request body exceeds the 1 MiB limit');
  if (status === 415) return new GraftError('unsupported_media_type', 'unsupported body encoding or media type');
  return new GraftError('bad_request', status === 400 ? 'malformed request: the URL or body could not be decoded' : `malformed request (status ${status})`);
}

/** Postgres SQLSTATE classes that mean "the database is not there right now". */
function isDatabaseUnavailable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  return code.startsWith('08') || code === '57P01' || code === '57P03' || code === 'ECONNREFUSED' || code === 'ETIMEDOUT';
}

/** Writes the standard error body. */
export function sendError(res: Response, requestId: string, code: ErrorCode, message: string, details?: unknown, diagnostic?: ErrorBody['diagnostic']): void {
  const body: ErrorBody = { error: { code, message, requestId, ...(details === undefined ? {} : { details }) }, ...(diagnostic ? { diagnostic } : {}) };
  res.status(errorStatus[code]).json(body);
}

/**
 * The one place errors become responses: GraftError by its code; an error while the database is
 * unreachable is 503 `unavailable` (by its SQLSTATE or errno, or, for a connection that broke
 * mid-query and says so only in prose, by asking the database whether it answers); everything else
 * 500 (logged).
 */
export function errorMiddleware(log: Logger, databaseAnswers: () => Promise<boolean> = async () => true) {
  return (err: unknown, req: Request, res: Response, next: NextFunction): void => {
    handle(err, req, res).catch(next);
  };

  async function handle(err: unknown, req: Request, res: Response): Promise<void> {
    const { requestId } = requestState(req);
    const known = err instanceof GraftError ? err : fromBodyParser(err);
    if (res.headersSent) {
      log.warn('http.error_after_headers', { requestId, err });
      res.destroy();
      return;
    }
    if (known) {
      sendError(res, requestId, known.code, known.message, known.details, known.diagnostic);
      return;
    }
    if (isDatabaseUnavailable(err) || !(await databaseAnswers())) {
      log.warn('http.database_unavailable', { requestId, err });
      res.setHeader('Retry-After', '2');
      sendError(res, requestId, 'unavailable', 'the database is unavailable; retry shortly');
      return;
    }
    log.error('http.unhandled_error', { requestId, method: req.method, path: req.path, err });
    sendError(res, requestId, 'internal_error', 'internal error; the request id identifies it in the hub log');
  }
}
