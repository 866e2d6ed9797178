import { decodeLogChunk, GraftError, IdParams, type LogChunkJson, LogsQuery, type LogStream } from '@graft/protocol';
import type { Request, Response } from 'express';
import type { Principal } from '../auth/principal.js';
import { projectRole } from '../domain/access.js';
import type { HubContext } from '../hub-context.js';
import { route, type RouteSpec } from '../http/route.js';
import { logClosedTopic, logTopic } from '../logs/log-ingest.js';
import type { StoredChunk } from '../logs/log-store.js';

/** Rows read from Postgres per query while paging through a log. */
const PAGE = 500;
/** A comment line on idle SSE and text streams, so proxies keep them open. */
const KEEPALIVE_MS = 15_000;

/** The project of an agent's log if the caller may read the agent (agents: only their own). */
async function authorizeRead(ctx: HubContext, principal: Principal, agentId: string): Promise<void> {
  if (principal.kind === 'agent') {
    if (principal.agentId !== agentId) throw new GraftError('forbidden', 'agent tokens may only read their own log');
    return;
  }
  if (principal.kind !== 'user') throw new GraftError('unauthorized', 'a user or agent token is required');
  const agent = await ctx.db.selectFrom('agents').select('project_id').where('id', '=', agentId).executeTakeFirst();
  // A deleted agent's log stays readable (until retention) to those who could read the agent.
  const projectId = agent?.project_id ?? (await ctx.logs.store.state(agentId))?.projectId;
  if (!projectId) throw new GraftError('not_found', 'agent not found');
  if (principal.isAdmin) return;
  const role = await projectRole(ctx.db, principal, projectId);
  if (role === null) throw new GraftError('not_found', 'agent not found');
}

const toJson = (c: StoredChunk): LogChunkJson => ({ seq: c.seq, stream: c.stream, at: c.at.toISOString(), data: c.data.toString('utf8') });

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
type Sink = (chunks: readonly StoredChunk[]) => void;

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
            if (sse) res.write(`id: ${c.seq}\nevent: log\ndata: ${JSON.stringify(toJson(c))}\n\n`);
            else res.write(c.data);
          }
        };
        if (query.tail !== undefined && since === 0) {
          const chunks = await tailChunks(ctx, params.id, query.tail, stream);
          // Later pages continue after the last chunk shown, not after the first.
          const first = chunks[0];
          if (first) since = first.seq - 1;
          sink(chunks);
        }
        if (!follow) {
          await pageThrough(ctx, params.id, since, stream, sink, () => false);
          ctx.metrics.logBytes.inc({ what: 'read' }, sent);
          res.end();
          return undefined;
        }
        // Unfiltered reads: the position must move past other streams' chunks too (the sink filters).
        await followLog(ctx, params.id, req, res, () => since, sink, sse);
        ctx.metrics.logBytes.inc({ what: 'read' }, sent);
        return undefined;
      },
    }),
  ];
}

/** Sends every stored chunk after `since()`, page by page; stops early when `stop()` says so. */
async function pageThrough(ctx: HubContext, agentId: string, since: number, stream: LogStream | undefined, sink: Sink, stop: () => boolean): Promise<number> {
  let after = since;
  for (;;) {
    const page = await ctx.logs.store.read(agentId, after, PAGE, stream);
    sink(page);
    const last = page.at(-1);
    if (last) after = last.seq;
    if (page.length < PAGE || stop()) return after;
  }
}

/**
 * Live part: subscribes first (so nothing published meanwhile is missed), then catches up from
 * Postgres, then streams from the bus. A gap (a live chunk beyond the next expected sequence
 * number, e.g. after the bus dropped messages) is filled from Postgres. Ends when the log closes
 * and everything up to its last chunk was sent, or when the client goes. Reads are unfiltered, so
 * the position passes the other stream's chunks; the sink does the filtering.
 */
async function followLog(
  ctx: HubContext,
  agentId: string,
  req: Request,
  res: Response,
  since: () => number,
  sink: Sink,
  sse: boolean,
): Promise<void> {
  let gone = false;
  let closedAt: number | null = null;
  let wake: () => void = () => {};
  const live: StoredChunk[] = [];
  const offChunks = ctx.logs.events.subscribe(logTopic(agentId), (frame) => {
    const decoded = decodeLogChunk(frame);
    if (!decoded.ok) return;
    const c = decoded.chunk;
    live.push({ seq: c.seq, stream: c.stream, at: new Date(c.at), data: c.data });
    wake();
  });
  const offClosed = ctx.logs.events.subscribe(logClosedTopic(agentId), (m) => {
    closedAt = Number(m.toString('utf8'));
    wake();
  });
  const keepalive = setInterval(() => res.write(sse ? ': keep-alive\n\n' : ''), KEEPALIVE_MS);
  const done = () => {
    gone = true;
    wake();
  };
  req.once('close', done);
  res.once('close', done);
  try {
    const state = await ctx.logs.store.state(agentId);
    if (state?.closedSeq != null && (await isFinished(ctx, agentId))) closedAt = state.closedSeq;
    await pageThrough(ctx, agentId, since(), undefined, sink, () => gone);
    while (!gone) {
      if (live.length > 0) {
        const batch = live.splice(0);
        const first = batch[0];
        // Missed something between catch-up and now (published before this reader subscribed, or lost
        // by the bus): read it from Postgres, waiting until it is stored there. Never show a gap.
        while (first && first.seq > since() + 1 && !gone) {
          await pageThrough(ctx, agentId, since(), undefined, sink, () => gone);
          if (first.seq > since() + 1) await new Promise<void>((r) => setTimeout(r, 20));
        }
        sink(batch);
        // Back-pressure: a slow reader does not make the hub buffer without bound; it re-reads later.
        if (res.writableNeedDrain) {
          await new Promise<void>((resolve) => {
            res.once('drain', resolve);
            res.once('close', resolve);
          });
        }
        continue;
      }
      if (closedAt !== null && since() >= closedAt && (await isFinished(ctx, agentId))) break;
      if (closedAt !== null && since() < closedAt) {
        await pageThrough(ctx, agentId, since(), undefined, sink, () => gone);
        if (since() < closedAt) await new Promise<void>((r) => setTimeout(r, 100));
        continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
    if (!gone && sse) res.write(`event: end\ndata: ${JSON.stringify({ lastSeq: since() })}\n\n`);
  } finally {
    offChunks();
    offClosed();
    clearInterval(keepalive);
    if (!res.writableEnded) res.end();
  }
}

/** Whether the agent's run is over for good (its log will not grow until someone starts it again). */
async function isFinished(ctx: HubContext, agentId: string): Promise<boolean> {
  const agent = await ctx.db.selectFrom('agents').select(['phase']).where('id', '=', agentId).executeTakeFirst();
  return agent === undefined || agent.phase === 'stopped' || agent.phase === 'error' || agent.phase === 'suspended';
}
