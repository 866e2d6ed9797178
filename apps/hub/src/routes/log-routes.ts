import { IdParams, LogsQuery, type LogStream } from '@graft/protocol';
import type { Response } from 'express';
import type { HubContext } from '../hub-context.js';
import { route, type RouteSpec } from '../http/route.js';
import { authorizeRead, type ChunkSink, chunkJson, followLog, type LogFollower, LOG_PAGE, pageThrough } from '../logs/log-reader.js';
import type { StoredChunk } from '../logs/log-store.js';

const PAGE = LOG_PAGE;
/** A comment line on idle SSE and text streams, so proxies keep them open. */
const KEEPALIVE_MS = 15_000;

/** The chunks holding the last `lines` lines (the first one cut to its last line), oldest first. */
async function tailChunks(ctx: HubContext, agentId: string, lines: number, stream: LogStream | undefined): Promise<StoredChunk[]> {
  if (lines === 0) return [];
  const picked: StoredChunk[] = [];
  let newlines = 0;
  let before = Number.MAX_SAFE_INTEGER;
  for (;;) {
    const page = await ctx.logs.store.readBackwards(agentId, before, PAGE, stream);
    for (const c of page) {
      picked.push(c);
      for (const byte of c.data) if (byte === 0x0a) newlines++;
      // One newline more than lines: the last one closes the line before the first wanted.
      if (newlines > lines) break;
    }
    if (newlines > lines || page.length < PAGE) break;
    before = page.at(-1)?.seq ?? 0;
  }
  picked.reverse();
  // Count from the end: drop everything before the start of the `lines`-th last line.
  let seen = 0;
  const last = picked.at(-1);
  const endsWithNewline = last !== undefined && last.data.at(-1) === 0x0a;
  const wanted = endsWithNewline ? lines + 1 : lines;
  for (let i = picked.length - 1; i >= 0; i--) {
    const c = picked[i] as StoredChunk;
    for (let j = c.data.length - 1; j >= 0; j--) {
      if (c.data[j] !== 0x0a) continue;
      seen++;
      if (seen === wanted) {
        const cut = { ...c, data: c.data.subarray(j + 1) };
        return [cut, ...picked.slice(i + 1)].filter((x) => x.data.length > 0 || x.stream === 'system');
      }
    }
  }
  return picked;
}

/** Writes chunks as the caller asked: raw bytes, SSE events, or nothing more. */
type Sink = ChunkSink;

/** An HTTP response as a log follower. */
function responseFollower(req: { once(event: 'close', l: () => void): unknown }, res: Response): LogFollower {
  return {
    onGone: (listener) => {
      req.once('close', listener);
      res.once('close', listener);
    },
    // Back-pressure: a slow reader does not make the hub buffer without bound; it re-reads later.
    needsDrain: () => res.writableNeedDrain,
    drained: () =>
      new Promise<void>((resolve) => {
        res.once('drain', resolve);
        res.once('close', resolve);
      }),
  };
}

/**
 * `GET /api/v1/agents/:id/logs` (DESIGN §6): plain text by default (`tail`, `since`, `stream`),
 * `follow=1` keeps streaming (chunked text) until the agent's log closes or the client goes, and
 * `Accept: text/event-stream` gives SSE with each chunk's sequence number as the event id, so a
 * client resumes with `Last-Event-ID`. Live chunks come from the event bus, so a reader may be on
 * another replica than the broker's tunnel; a reader that falls behind re-reads from Postgres.
 */
export function logRoutes(ctx: HubContext): RouteSpec[] {
  return [
    route({
      method: 'get',
      path: '/api/v1/agents/:id/logs',
      summary: "An agent's output: plain text, or live with follow=1, or SSE (Accept: text/event-stream, resumable with Last-Event-ID)",
      tag: 'agents',
      auth: 'any',
      params: IdParams,
      query: LogsQuery,
      responses: { 200: null },
      handler: async ({ params, query, principal, req, res }) => {
        await authorizeRead(ctx, principal, params.id);
        const sse = (req.headers.accept ?? '').includes('text/event-stream');
        const follow = sse || query.follow === '1' || query.follow === 'true';
        const lastEventId = sse ? Number(req.headers['last-event-id']) : Number.NaN;
        let since = Number.isInteger(lastEventId) && lastEventId >= 0 ? lastEventId : (query.since ?? 0);
        const stream = query.stream;
        res.status(200);
        res.setHeader('cache-control', 'no-store');
        res.setHeader('x-content-type-options', 'nosniff');
        if (sse) {
          res.setHeader('content-type', 'text/event-stream; charset=utf-8');
          res.setHeader('x-accel-buffering', 'no');
        } else res.setHeader('content-type', 'text/plain; charset=utf-8');
        res.flushHeaders();
        let sent = 0;
        const sink: Sink = (chunks) => {
          for (const c of chunks) {
            if (c.seq <= since) continue;
            since = c.seq;
            if (stream !== undefined && c.stream !== stream && c.stream !== 'system') continue;
            sent += c.data.length;
            if (sse) res.write(`id: ${c.seq}\nevent: log\ndata: ${JSON.stringify(chunkJson(c))}\n\n`);
            else res.write(c.data);
          }
        };
        if (query.tail !== undefined && since === 0) {
          const chunks = await tailChunks(ctx, params.id, query.tail, stream);
          // Later pages continue after the last chunk shown, not after the first.
          const first = chunks[0];
          if (first) since = first.seq - 1;
          // tail=0 (or no line to show): nothing of the past, only what comes next.
          else since = (await ctx.logs.store.state(params.id))?.storedSeq ?? 0;
          sink(chunks);
        }
        if (!follow) {
          await pageThrough(ctx, params.id, since, stream, sink, () => false);
          ctx.metrics.logBytes.inc({ what: 'read' }, sent);
          res.end();
          return undefined;
        }
        // Unfiltered reads: the position must move past other streams' chunks too (the sink filters).
        const keepalive = setInterval(() => res.write(sse ? ': keep-alive\n\n' : ''), KEEPALIVE_MS);
        try {
          const ended = await followLog(ctx, params.id, responseFollower(req, res), () => since, sink);
          if (ended && sse) res.write(`event: end\ndata: ${JSON.stringify({ lastSeq: since })}\n\n`);
        } finally {
          clearInterval(keepalive);
          if (!res.writableEnded) res.end();
        }
        ctx.metrics.logBytes.inc({ what: 'read' }, sent);
        return undefined;
      },
    }),
  ];
}

