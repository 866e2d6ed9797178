import { GraftApiError, GraftClient } from '@graft/client';
import type { DevLoginResponse, ErrorBody, ErrorCode } from '@graft/protocol';
import { expect } from 'vitest';

/** A raw HTTP answer: status, parsed JSON body (undefined when empty) and the text as sent. */
export interface Reply<T = unknown> {
  status: number;
  body: T;
  text: string;
}

/**
 * Sends one request without the typed client, so tests can send bad input and see exact statuses.
 * `token: null` sends no Authorization header.
 */
export async function apiRequest<T = unknown>(
  baseUrl: string,
  token: string | null,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply<T>> {
  const h: Record<string, string> = { ...headers };
  if (token !== null) h.authorization = `Bearer ${token}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  const res = await fetch(`${baseUrl}${path}`, { method, headers: h, body: body === undefined ? null : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: (text === '' ? undefined : JSON.parse(text)) as T, text };
}

/** Asserts status and error code together, so a failure shows both. */
export function expectApiError(reply: Reply, status: number, code: ErrorCode): void {
  expect({ status: reply.status, code: (reply.body as Partial<ErrorBody> | undefined)?.error?.code }).toEqual({ status, code });
}

/** The API error a typed-client call failed with; throws if the call succeeded. */
export async function apiFailure(call: Promise<unknown>): Promise<GraftApiError> {
  try {
    await call;
  } catch (err) {
    if (err instanceof GraftApiError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

/** Dev-logs a user in (the hub must run with GRAFT_DEV_AUTH) and returns a client holding its token. */
export async function devLogin(baseUrl: string, email: string): Promise<DevLoginResponse & { client: GraftClient }> {
  const r = await apiRequest<DevLoginResponse>(baseUrl, null, 'POST', '/api/v1/auth/dev-login', { email });
  expect(r.status).toBe(200);
  return { ...r.body, client: new GraftClient({ baseUrl, token: r.body.token }) };
}
