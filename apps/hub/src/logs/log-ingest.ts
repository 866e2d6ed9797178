import type { Database } from '@graft/db';
import type { Logger } from '@graft/log';
import { encodeLogChunk, type LogChunk } from '@graft/protocol';
import type { Kysely } from 'kysely';
import type { EventBus } from '../events/event-bus.js';
import type { LogStore } from './log-store.js';

/** Topic of an agent's stored log chunks (each message a binary log frame). */
export const logTopic = (agentId: string): string => `log:${agentId}`;
/** Topic on which an agent's log being closed is announced (message: the last seq, as text). */
export const logClosedTopic = (agentId: string): string => `log-closed:${agentId}`;

/** Chunks waiting in memory above which a session pauses reading its socket (bounded memory whatever Postgres's pace). */
const HIGH_WATER_BYTES = 32 * 1024 * 1024;
const BATCH_CHUNKS = 256;
const BATCH_DELAY_MS = 5;
const OWNER_CACHE_MS = 30_000;
/** How soon a batch Postgres refused is tried again. */
const STORE_RETRY_MS = 1_000;

interface Pending {
  brokerId: string;
  chunk: LogChunk;
  ack: (agentId: string, seq: number) => void;
  /** Already on the bus (its owner was known when it arrived). */
  published: boolean;
}

/**
 * Takes log chunks from broker tunnels (DESIGN §6): publishes each on the event bus for live
 * readers on any replica, stores them in batches, each once, and acknowledges to the broker by
 * sequence once stored. Batches are written one after another, so a cumulative
 * acknowledgement never covers a chunk that is not stored yet.
 */
export class LogIngest {
  private queue: Pending[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();
  private readonly owners = new Map<string, { projectId: string | null; brokerId: string | null; at: number }>();
  private readonly drainWaiters: Array<() => void> = [];

  constructor(
    private readonly deps: {
      db: Kysely<Database>;
      store: LogStore;
      events: EventBus;
      log: Logger;
      /** Counts bytes received from brokers. */
      onReceived?: (bytes: number) => void;
      /** Counts bytes stored and chunks resent (already stored). */
      onStored?: (bytes: number) => void;
      /** Counts acknowledgements sent to brokers. */
      onAcked?: (acks: number) => void;
    },
  ) {}

  /** Queues a chunk from `brokerId`; returns false when the caller should pause reading until {@link drained} resolves. */
  receive(brokerId: string, chunk: LogChunk, ack: (agentId: string, seq: number) => void): boolean {
    // Live readers get a chunk as it arrives when its owner is known already (the common case):
    // they need not wait for Postgres.
    this.deps.onReceived?.(chunk.data.length);
    const owner = this.owners.get(chunk.agentId);
    const published = owner !== undefined && owner.brokerId === brokerId && owner.projectId !== null;
    if (published) this.deps.events.publish(logTopic(chunk.agentId), encodeLogChunk(chunk));
    this.queue.push({ brokerId, chunk, ack, published });
    this.queuedBytes += chunk.data.length;
    if (this.queue.length >= BATCH_CHUNKS) this.flushSoon(0);
    else this.flushSoon(BATCH_DELAY_MS);
    return this.queuedBytes < HIGH_WATER_BYTES;
  }

  /** Resolves once the backlog is below the high-water mark again. */
  drained(): Promise<void> {
    if (this.queuedBytes < HIGH_WATER_BYTES) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** The broker says the agent's log is complete up to `lastSeq`: recorded after everything queued before it. */
  async closed(brokerId: string, agentId: string, lastSeq: number): Promise<void> {
    this.flushSoon(0);
    await this.flushing;
    const owner = await this.ownerOf(agentId);
    if (!owner.projectId || (owner.brokerId !== null && owner.brokerId !== brokerId)) return;
    await this.deps.store.close(agentId, owner.projectId, lastSeq);
    this.deps.events.publish(logClosedTopic(agentId), Buffer.from(String(lastSeq)));
  }

  /** Writes what is queued (hub shutdown). */
  async flush(): Promise<void> {
    this.flushSoon(0);
    await this.flushing;
  }

  private flushSoon(delayMs: number): void {
    if (this.timer && delayMs > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flushing = this.flushing.then(() => this.flushBatch());
    }, delayMs);
  }

  private async flushBatch(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, BATCH_CHUNKS);
      const bytes = batch.reduce((n, p) => n + p.chunk.data.length, 0);
      try {
        const accepted: Array<{ p: Pending; projectId: string }> = [];
        for (const p of batch) {
          let owner = await this.ownerOf(p.chunk.agentId);
          // The agent may have moved to another broker since it was cached: look again before refusing.
          if (owner.brokerId !== null && owner.brokerId !== p.brokerId) owner = await this.ownerOf(p.chunk.agentId, true);
          // Only the broker that holds the agent (or held it, for a deleted agent's remaining log) may write its log.
          if (owner.projectId !== null && (owner.brokerId === null || owner.brokerId === p.brokerId)) accepted.push({ p, projectId: owner.projectId });
          else this.deps.log.warn('logs.chunk_refused', { agentId: p.chunk.agentId, brokerId: p.brokerId, seq: p.chunk.seq });
        }
        // Live readers get the chunks before they are stored: a reader that misses one (it subscribed
        // between publish and store) finds it in Postgres once stored, and never shows a gap meanwhile.
        for (const { p } of accepted) {
          if (p.published) continue;
          this.deps.events.publish(logTopic(p.chunk.agentId), encodeLogChunk(p.chunk));
          p.published = true;
        }
        await this.deps.store.insert(accepted.map(({ p, projectId }) => ({ chunk: p.chunk, projectId })));
        this.deps.onStored?.(accepted.reduce((n, { p }) => n + p.chunk.data.length, 0));
      } catch (err) {
        // Postgres is away: keep the batch, in order, and try again shortly. Nothing is acknowledged
        // meanwhile, and the backlog's high-water mark pauses the tunnels that feed it.
        this.deps.log.error('logs.store_failed', { chunks: batch.length, retryInMs: STORE_RETRY_MS, err });
        this.queue.unshift(...batch);
        const retry = setTimeout(() => this.flushSoon(0), STORE_RETRY_MS);
        retry.unref();
        return;
      }
      // Refused chunks are acknowledged too: the broker has nothing to gain from resending them.
      const highest = new Map<string, Pending>();
      for (const p of batch) {
        const key = `${p.brokerId}/${p.chunk.agentId}`;
        const cur = highest.get(key);
        if (!cur || cur.chunk.seq < p.chunk.seq) highest.set(key, p);
      }
      for (const p of highest.values()) p.ack(p.chunk.agentId, p.chunk.seq);
      this.deps.onAcked?.(highest.size);
      this.queuedBytes -= bytes;
      if (this.queuedBytes < HIGH_WATER_BYTES) for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  /** The agent's project and broker (broker null for an agent that is gone but whose log exists). */
  private async ownerOf(agentId: string, fresh = false): Promise<{ projectId: string | null; brokerId: string | null }> {
    const cached = this.owners.get(agentId);
    if (!fresh && cached && Date.now() - cached.at < OWNER_CACHE_MS) return cached;
    const agent = await this.deps.db.selectFrom('agents').select(['project_id', 'broker_id']).where('id', '=', agentId).executeTakeFirst();
    let owner: { projectId: string | null; brokerId: string | null };
    if (agent) owner = { projectId: agent.project_id, brokerId: agent.broker_id ?? '' };
    else {
      const log = await this.deps.db.selectFrom('agent_logs').select('project_id').where('agent_id', '=', agentId).executeTakeFirst();
      owner = { projectId: log?.project_id ?? null, brokerId: null };
    }
    this.owners.set(agentId, { ...owner, at: Date.now() });
    if (this.owners.size > 100_000) this.owners.clear();
    return owner;
  }
}
