import type { Database } from '@graft/db';
import type { Logger } from '@graft/log';
import type { LogChunk } from '@graft/protocol';
import { type Kysely, sql } from 'kysely';
import { archiveKey, encodeArchiveBatch } from './archive-batch.js';
import type { LogArchive } from './archive/log-archive.js';

/** Bytes of log per archive object. */
const BATCH_BYTES = 4 * 1024 * 1024;

/**
 * Moves finished agents' logs from Postgres to the archive (DESIGN §6): once a log is closed (the
 * broker sent every chunk of the run), stored completely, and its agent stopped, errored or was
 * deleted, its hot chunks go to the archive in batches and leave Postgres; reads combine both.
 * Also applies each project's retention: logs not written for `log_retention_days` are removed,
 * archive and hot chunks alike. Each is one pass, run by the `log-archival` and `log-retention`
 * jobs (hub-jobs.ts), so in a cluster one replica at a time does it.
 */
export class LogArchiver {
  constructor(private readonly deps: { db: Kysely<Database>; archive: LogArchive; log: Logger; onArchived?: (bytes: number) => void }) {}

  /** One archival pass: moves up to 50 finished logs that are ready to the archive. */
  async archivePass(): Promise<void> {
    const { rows } = await sql<{ agent_id: string; project_id: string; archived_seq: string; closed_seq: string }>`
      SELECT l.agent_id, l.project_id, l.archived_seq, l.closed_seq FROM agent_logs l
        LEFT JOIN agents a ON a.id = l.agent_id
        WHERE l.closed_seq IS NOT NULL AND l.archived_seq < l.closed_seq AND l.stored_seq >= l.closed_seq
          AND (a.id IS NULL OR a.phase IN ('stopped', 'error'))
        LIMIT 50`.execute(this.deps.db);
    for (const r of rows) await this.archive(r.agent_id, r.project_id, Number(r.archived_seq), Number(r.closed_seq));
  }

  private async archive(agentId: string, projectId: string, from: number, to: number): Promise<void> {
    let after = from;
    while (after < to) {
      const chunks: LogChunk[] = [];
      let bytes = 0;
      // Batches of consecutive chunks up to BATCH_BYTES (at least one chunk).
      while (after < to && bytes < BATCH_BYTES) {
        const rows = await this.deps.db
          .selectFrom('agent_log_chunks')
          .select(['seq', 'stream', 'at', 'data'])
          .where('agent_id', '=', agentId)
          .where('seq', '>', String(after))
          .where('seq', '<=', String(to))
          .orderBy('seq')
          .limit(200)
          .execute();
        if (rows.length === 0) break;
        for (const row of rows) {
          if (bytes >= BATCH_BYTES) break;
          chunks.push({ agentId, seq: Number(row.seq), stream: row.stream, at: row.at.getTime(), data: row.data });
          bytes += row.data.length;
          after = Number(row.seq);
        }
      }
      const first = chunks[0];
      const last = chunks.at(-1);
      if (!first || !last) return;
      await this.deps.archive.put(archiveKey(projectId, agentId, first.seq, last.seq), encodeArchiveBatch(chunks));
      // Recorded before the hot chunks go: a crash in between leaves both, never neither.
      await this.deps.db.transaction().execute(async (trx) => {
        await trx.updateTable('agent_logs').set({ archived_seq: last.seq }).where('agent_id', '=', agentId).execute();
        await trx.deleteFrom('agent_log_chunks').where('agent_id', '=', agentId).where('seq', '<=', String(last.seq)).execute();
      });
      this.deps.onArchived?.(bytes);
      this.deps.log.info('logs.archived', { agentId, fromSeq: first.seq, toSeq: last.seq, bytes });
    }
  }

  /** One retention pass: removes up to 100 logs past their project's retention, archive and hot chunks alike. */
  async retentionPass(): Promise<void> {
    const { rows } = await sql<{ agent_id: string; project_id: string }>`
      SELECT l.agent_id, l.project_id FROM agent_logs l JOIN projects p ON p.id = l.project_id
        WHERE l.updated_at < now() - make_interval(days => p.log_retention_days)
          AND NOT EXISTS (SELECT 1 FROM agents a WHERE a.id = l.agent_id AND a.phase NOT IN ('stopped', 'error'))
          -- A log the archival job has yet to move is left to it (the two jobs may run at once, and
          -- a batch archived after the prefix was deleted would stay behind); it expires once moved.
          AND NOT (l.closed_seq IS NOT NULL AND l.archived_seq < l.closed_seq AND l.stored_seq >= l.closed_seq)
        LIMIT 100`.execute(this.deps.db);
    for (const r of rows) {
      await this.deps.archive.deletePrefix(`${r.project_id}/${r.agent_id}`);
      await this.deps.db.transaction().execute(async (trx) => {
        await trx.deleteFrom('agent_log_chunks').where('agent_id', '=', r.agent_id).execute();
        await trx.deleteFrom('agent_logs').where('agent_id', '=', r.agent_id).execute();
      });
      this.deps.log.info('logs.expired', { agentId: r.agent_id, projectId: r.project_id });
    }
  }
}
