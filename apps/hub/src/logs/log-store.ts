import type { Database } from '@graft/db';
import type { LogChunk, LogStream } from '@graft/protocol';
import { type Kysely, sql } from 'kysely';
import { archiveRange, decodeArchiveBatch } from './archive-batch.js';
import type { LogArchive } from './archive/log-archive.js';

/** A stored chunk as readers get it. */
export interface StoredChunk {
  seq: number;
  stream: LogStream;
  at: Date;
  data: Buffer;
}

/** Per agent: what of its log is stored, complete (closed) and archived. */
export interface LogState {
  projectId: string;
  storedSeq: number;
  closedSeq: number | null;
  archivedSeq: number;
  bytes: number;
}

/**
 * The hub's log storage (DESIGN §6): hot chunks in Postgres keyed by (agent, seq), so a chunk a
 * broker resends after a reconnect is stored once; once an agent's log is archived, its chunks
 * live in the archive (objects of consecutive chunks) and reads page through both by sequence
 * number, archive first.
 */
export class LogStore {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly archive: LogArchive | null = null,
  ) {}

  /** Stores chunks (each once: resent ones are ignored) and advances each agent's stored_seq. */
  async insert(chunks: ReadonlyArray<{ chunk: LogChunk; projectId: string }>): Promise<void> {
    if (chunks.length === 0) return;
    await sql`
      INSERT INTO agent_log_chunks (agent_id, seq, stream, at, data)
      SELECT * FROM unnest(${chunks.map((c) => c.chunk.agentId)}::uuid[], ${chunks.map((c) => c.chunk.seq)}::bigint[],
        ${chunks.map((c) => c.chunk.stream)}::text[], ${chunks.map((c) => new Date(c.chunk.at).toISOString())}::timestamptz[],
        ${chunks.map((c) => c.chunk.data)}::bytea[])
      ON CONFLICT (agent_id, seq) DO NOTHING`.execute(this.db);
    const perAgent = new Map<string, { projectId: string; seq: number; bytes: number }>();
    for (const { chunk, projectId } of chunks) {
      const cur = perAgent.get(chunk.agentId) ?? { projectId, seq: 0, bytes: 0 };
      cur.seq = Math.max(cur.seq, chunk.seq);
      cur.bytes += chunk.data.length;
      perAgent.set(chunk.agentId, cur);
    }
    const rows = [...perAgent];
    await sql`
      INSERT INTO agent_logs (agent_id, project_id, stored_seq, bytes)
      SELECT * FROM unnest(${rows.map(([id]) => id)}::uuid[], ${rows.map(([, v]) => v.projectId)}::uuid[], ${rows.map(([, v]) => v.seq)}::bigint[], ${rows.map(([, v]) => v.bytes)}::bigint[])
      ON CONFLICT (agent_id) DO UPDATE SET stored_seq = greatest(agent_logs.stored_seq, EXCLUDED.stored_seq),
        bytes = agent_logs.bytes + EXCLUDED.bytes, updated_at = now()`.execute(this.db);
  }

  /** Records that the log is complete up to `seq` (the broker's `log_closed`). */
  async close(agentId: string, projectId: string, seq: number): Promise<void> {
    await sql`
      INSERT INTO agent_logs (agent_id, project_id, closed_seq) VALUES (${agentId}, ${projectId}, ${seq})
      ON CONFLICT (agent_id) DO UPDATE SET closed_seq = greatest(coalesce(agent_logs.closed_seq, 0), EXCLUDED.closed_seq), updated_at = now()`.execute(this.db);
  }

  /** The log's bookkeeping; null when nothing was ever stored for the agent. */
  async state(agentId: string): Promise<LogState | null> {
    const r = await this.db.selectFrom('agent_logs').selectAll().where('agent_id', '=', agentId).executeTakeFirst();
    if (!r) return null;
    return {
      projectId: r.project_id,
      storedSeq: Number(r.stored_seq),
      closedSeq: r.closed_seq === null ? null : Number(r.closed_seq),
      archivedSeq: Number(r.archived_seq),
      bytes: Number(r.bytes),
    };
  }

  /** Chunks with a sequence number above `afterSeq`, oldest first, at most `limit`; `system` chunks pass every stream filter. */
  async read(agentId: string, afterSeq: number, limit: number, stream?: LogStream): Promise<StoredChunk[]> {
    const archived = await this.archivedBatches(agentId);
    const batch = archived.find((b) => b.to > afterSeq);
    if (batch) {
      const chunks = (await this.readBatch(batch.key)).filter((c) => c.seq > afterSeq && (stream === undefined || c.stream === stream || c.stream === 'system'));
      // A batch may hold only the other stream: go on to the next one (or the hot chunks).
      return chunks.length > 0 ? chunks.slice(0, limit) : this.read(agentId, batch.to, limit, stream);
    }
    let q = this.db
      .selectFrom('agent_log_chunks')
      .select(['seq', 'stream', 'at', 'data'])
      .where('agent_id', '=', agentId)
      .where('seq', '>', String(afterSeq));
    if (stream !== undefined) q = q.where('stream', 'in', [stream, 'system']);
    const rows = await q.orderBy('seq').limit(limit).execute();
    return rows.map((r) => ({ seq: Number(r.seq), stream: r.stream, at: r.at, data: r.data }));
  }

  /** Chunks with a sequence number below `beforeSeq`, newest first, at most `limit` (for `tail`). */
  async readBackwards(agentId: string, beforeSeq: number, limit: number, stream?: LogStream): Promise<StoredChunk[]> {
    const hot = await this.readHotBackwards(agentId, beforeSeq, limit, stream);
    if (hot.length >= limit) return hot;
    const archived = await this.archivedBatches(agentId);
    const out = [...hot];
    const below = Math.min(beforeSeq, hot.at(-1)?.seq ?? beforeSeq);
    for (const b of [...archived].reverse()) {
      if (b.from >= below) continue;
      const chunks = (await this.readBatch(b.key)).filter((c) => c.seq < below && (stream === undefined || c.stream === stream || c.stream === 'system')).reverse();
      out.push(...chunks);
      if (out.length >= limit) break;
    }
    return out.slice(0, limit);
  }

  /** Archived batches of an agent's log, oldest first (none without an archive). */
  private async archivedBatches(agentId: string): Promise<Array<{ key: string; from: number; to: number }>> {
    if (!this.archive) return [];
    const state = await this.db.selectFrom('agent_logs').select(['project_id', 'archived_seq']).where('agent_id', '=', agentId).executeTakeFirst();
    if (!state || Number(state.archived_seq) === 0) return [];
    const keys = await this.archive.list(`${state.project_id}/${agentId}`);
    return keys.flatMap((key) => {
      const range = archiveRange(key);
      return range ? [{ key, ...range }] : [];
    });
  }

  private async readBatch(key: string): Promise<StoredChunk[]> {
    const data = await this.archive?.get(key);
    if (!data) throw new Error(`archive object ${key} is missing`);
    return decodeArchiveBatch(data).map((c) => ({ seq: c.seq, stream: c.stream, at: new Date(c.at), data: c.data }));
  }

  private async readHotBackwards(agentId: string, beforeSeq: number, limit: number, stream?: LogStream): Promise<StoredChunk[]> {
    let q = this.db
      .selectFrom('agent_log_chunks')
      .select(['seq', 'stream', 'at', 'data'])
      .where('agent_id', '=', agentId)
      .where('seq', '<', String(beforeSeq));
    if (stream !== undefined) q = q.where('stream', 'in', [stream, 'system']);
    const rows = await q.orderBy('seq', 'desc').limit(limit).execute();
    return rows.map((r) => ({ seq: Number(r.seq), stream: r.stream, at: r.at, data: r.data }));
  }
}
