import { request } from 'node:http';

/** The subset of `fetch` GraftClient uses, so a client can talk over a Unix socket instead of TCP. */
export type FetchLike = (url: URL, init: { method: string; headers: Record<string, string>; body: string | null; signal: AbortSignal }) => Promise<Response>;

/**
 * A fetch that sends every request to an HTTP server on the Unix socket `socketPath` (the URL's
 * path and query are kept, its host only fills the Host header). Agents without network reach the
 * hub this way, through the relay socket their broker mounts into the sandbox.
 */
export function unixSocketFetch(socketPath: string): FetchLike {
  return (url, init) =>
    new Promise<Response>((resolve, reject) => {
      const req = request(
        { socketPath, method: init.method, path: `${url.pathname}${url.search}`, headers: { ...init.headers, host: url.host }, signal: init.signal },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.once('error', reject);
          res.once('end', () => {
            const headers = new Headers();
            for (const [k, v] of Object.entries(res.headers)) {
              if (typeof v === 'string') headers.set(k, v);
              else if (Array.isArray(v)) for (const one of v) headers.append(k, one);
            }
            const status = res.statusCode ?? 502;
            // A Response may not carry a body with these statuses.
            const body = status === 204 || status === 304 ? null : Buffer.concat(chunks);
            resolve(new Response(body, { status, statusText: res.statusMessage ?? '', headers }));
          });
        },
      );
      req.once('error', reject);
      req.end(init.body ?? undefined);
    });
}
