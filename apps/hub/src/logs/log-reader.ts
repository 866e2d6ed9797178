import { decodeLogChunk, GraftError, type LogChunkJson, type LogStream } from '@graft/protocol';
import type { Principal } from '../auth/principal.js';
import { projectRole } from '../domain/access.js';
import type { HubContext } from '../hub-context.js';
import { logClosedTopic, logTopic } from './log-ingest.js';
import type { StoredChunk } from './log-store.js';

/** Rows read from Postgres per query while paging through a log. */
export const LOG_PAGE = 500;

/** Where a reader's chunks go (it filters and encodes them for its client). */
export type ChunkSink = (chunks: readonly StoredChunk[]) => void;

/** The client end of a followed log, whatever carries it (chunked HTTP, SSE, WebSocket). */
export interface LogFollower {
  /** Registers what to do once the client went. */
  onGone(listener: () => void): void;
  /** Whether the client's connection holds too much unsent to take more now. */
  needsDrain(): boolean;
  /** Resolves once it took what it holds (or went). */
  drained(): Promise<void>;
}

/** Throws unless the caller may read the agent's log (agents: only their own). */
export async function authorizeRead(ctx: HubContext, principal: Principal, agentId: string): Promise<void> {
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

/** A stored chunk as JSON for readers (SSE events, WebSocket frames). */
export const chunkJson = (c: StoredChunk): LogChunkJson => ({ seq: c.seq, stream: c.stream, at: c.at.toISOString(), data: c.data.toString('utf8') });

/** Sends every stored chunk after `since()`, page by page; stops early when `stop()` says so. */
export async function pageThrough(ctx: HubContext, agentId: string, since: number, stream: LogStream | undefined, sink: ChunkSink, stop: () => boolean): Promise<number> {
  let after = since;
  for (;;) {
    const page = await ctx.logs.store.read(agentId, after, LOG_PAGE, stream);
    sink(page);
    const last = page.at(-1);
    if (last) after = last.seq;
    // Only an empty page is the end: a page from the archive holds one batch, maybe fewer than LOG_PAGE chunks.
    if (!last || stop()) return after;
  }
}

/**
 * Live part: subscribes first (so nothing published meanwhile is missed), then catches up from
 * Postgres, then streams from the bus. A gap (a live chunk beyond the next expected sequence
 * number, e.g. after the bus dropped messages) is filled from Postgres. Ends when the log closes
 * and everything up to its last chunk was sent, or when the client goes. Reads are unfiltered, so
 * the position passes the other stream's chunks; the sink does the filtering. True when the log
 * ended (everything up to its last chunk was sent), false when the client went first.
 */
export async function followLog(ctx: HubContext, agentId: string, client: LogFollower, since: () => number, sink: ChunkSink): Promise<boolean> {
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
  client.onGone(() => {
    gone = true;
    wake();
  });
  try {
    const state = await ctx.logs.store.state(agentId);
    // The close may already have been announced (before this reader subscribed): take it from storage.
    if (state?.closedSeq != null) closedAt = state.closedSeq;
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
        if (client.needsDrain()) await client.drained();
        continue;
      }
      if (closedAt !== null && since() >= closedAt) {
        if (await isFinished(ctx, agentId)) break;
        // Complete so far, but the agent's final phase has not landed yet (the broker's close can
        // arrive before its status), or it runs again: look again soon, or on new output.
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 250);
        });
        continue;
      }
      if (closedAt !== null && since() < closedAt) {
        await pageThrough(ctx, agentId, since(), undefined, sink, () => gone);
        if (since() < closedAt) await new Promise<void>((r) => setTimeout(r, 100));
        continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
    return !gone;
  } finally {
    offChunks();
    offClosed();
  }
}

/** Whether the agent's run is over for good (its log will not grow until someone starts it again). */
export async function isFinished(ctx: HubContext, agentId: string): Promise<boolean> {
  const agent = await ctx.db.selectFrom('agents').select(['phase']).where('id', '=', agentId).executeTakeFirst();
  return agent === undefined || agent.phase === 'stopped' || agent.phase === 'error' || agent.phase === 'suspended';
}
