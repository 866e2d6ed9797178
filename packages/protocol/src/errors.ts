import { z } from 'zod';

/** The closed set of error codes any Graft API may answer with. */
export const ErrorCode = z.enum([
  'bad_request',
  'validation_error',
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'invalid_transition',
  'join_token_invalid',
  'join_token_expired',
  'join_token_consumed',
  'signature_missing',
  'signature_malformed',
  'signature_invalid',
  'clock_skew',
  'replayed_request',
  'payload_too_large',
  'unsupported_media_type',
  'rate_limited',
  'unavailable',
  'internal_error',
]);
/** One of the closed set of error codes. */
export type ErrorCode = z.infer<typeof ErrorCode>;

/** HTTP status for each error code; the only place that mapping lives. */
export const errorStatus: Record<ErrorCode, number> = {
  bad_request: 400,
  validation_error: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  invalid_transition: 409,
  join_token_invalid: 401,
  join_token_expired: 401,
  join_token_consumed: 409,
  signature_missing: 401,
  signature_malformed: 400,
  signature_invalid: 401,
  clock_skew: 401,
  replayed_request: 401,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  unavailable: 503,
  internal_error: 500,
};

/** Actionable context for a person: what went wrong and what to run next. */
export const Diagnostic = z.object({
  category: z.string(),
  code: z.string(),
  severity: z.enum(['info', 'warning', 'error']),
  title: z.string(),
  message: z.string(),
  suggested_command: z.string().optional(),
  doc_url: z.string().optional(),
  evidence: z.record(z.string(), z.unknown()).optional(),
});
/** Actionable context for a person. */
export type Diagnostic = z.infer<typeof Diagnostic>;

/** The body of every non-2xx response. */
export const ErrorBody = z.object({
  error: z.object({
    code: ErrorCode,
    message: z.string(),
    details: z.unknown().optional(),
    requestId: z.string(),
  }),
  diagnostic: Diagnostic.optional(),
});
/** The body of every non-2xx response. */
export type ErrorBody = z.infer<typeof ErrorBody>;

/** An error that carries a code from the closed union; thrown anywhere, rendered by one middleware. */
export class GraftError extends Error {
  override readonly name = 'GraftError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    readonly diagnostic?: Diagnostic,
  ) {
    super(message);
  }
}
