import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDatabase, type DatabaseHandle, migrate } from '@graft/db';
import { createLogger } from '@graft/log';
import { createFreshDatabase, type FreshDatabase } from '@graft/testkit';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { FsLogArchive } from './archive/fs-log-archive.js';
import { LogArchiver } from './log-archiver.js';

let fresh: FreshDatabase;
let handle: DatabaseHandle;
let dir: string;
let archive: FsLogArchive;
let archiver: LogArchiver;
let projectId: string;

beforeAll(async () => {
  fresh = await createFreshDatabase(inject('pgAdminUrl'));
  handle = createDatabase({ connectionString: fresh.url, maxConnections: 4 });
  await migrate(handle.pool);
  dir = mkdtempSync(join(tmpdir(), 'graft-test-archiver-'));
  archive = new FsLogArchive({ rootDir: dir });
  archiver = new LogArchiver({ db: handle.db, archive, log: createLogger({ sink: () => {} }) });
  projectId = randomUUID();
  await handle.db.insertInto('projects').values({ id: projectId, name: 'logs', git_remote: null, labels: '{}', created_by: null }).execute();
  await sql`UPDATE projects SET log_retention_days = 1 WHERE id = ${projectId}`.execute(handle.db);
});
afterAll(async () => {
  await handle?.destroy();
  await fresh?.drop();
  rmSync(dir, { recursive: true, force: true });
});

/** A log of a deleted agent (no agent row) with `chunks` chunks stored, closed or not, last written `ageDays` ago. */
async function log(options: { chunks: number; closed: boolean; ageDays: number }): Promise<string> {
  const agentId = randomUUID();
  await sql`INSERT INTO agent_logs (agent_id, project_id, stored_seq, closed_seq, bytes, updated_at)
    VALUES (${agentId}, ${projectId}, ${options.chunks}, ${options.closed ? options.chunks : null}, ${options.chunks}, now() - make_interval(days => ${options.ageDays}))`.execute(handle.db);
  for (let seq = 1; seq <= options.chunks; seq++) {
    await sql`INSERT INTO agent_log_chunks (agent_id, seq, stream, at, data) VALUES (${agentId}, ${seq}, 'stdout', now(), ${Buffer.from(`line ${seq}\n`)})`.execute(handle.db);
  }
  return agentId;
}

const state = async (agentId: string) => ({
  row: await handle.db.selectFrom('agent_logs').select(['archived_seq']).where('agent_id', '=', agentId).executeTakeFirst(),
  hot: Number((await handle.db.selectFrom('agent_log_chunks').select(sql<string>`count(*)`.as('n')).where('agent_id', '=', agentId).executeTakeFirstOrThrow()).n),
  archived: await archive.list(`${projectId}/${agentId}`),
});

it('an archival pass moves a closed log to the archive and out of Postgres; an open one stays', async () => {
  const closed = await log({ chunks: 3, closed: true, ageDays: 0 });
  const open = await log({ chunks: 2, closed: false, ageDays: 0 });
  await archiver.archivePass();
  const moved = await state(closed);
  expect(moved.row).toEqual({ archived_seq: '3' });
  expect(moved.hot).toBe(0);
  expect(moved.archived).toHaveLength(1);
  expect(await state(open)).toEqual({ row: { archived_seq: '0' }, hot: 2, archived: [] });
});

it('a retention pass removes logs past retention, archive and all, keeps newer ones, and leaves one still to archive until it is archived', async () => {
  const expired = await log({ chunks: 2, closed: true, ageDays: 2 });
  const recent = await log({ chunks: 1, closed: false, ageDays: 0 });
  await archiver.archivePass();
  expect((await state(expired)).archived).toHaveLength(1);
  const waiting = await log({ chunks: 1, closed: true, ageDays: 2 });

  await archiver.retentionPass();
  expect(await state(expired)).toEqual({ row: undefined, hot: 0, archived: [] });
  expect((await state(recent)).hot).toBe(1);
  // Archival and retention are separate jobs: the log goes to the archive first, then expires.
  expect(await state(waiting)).toMatchObject({ row: { archived_seq: '0' }, hot: 1 });
  await archiver.archivePass();
  await archiver.retentionPass();
  expect(await state(waiting)).toEqual({ row: undefined, hot: 0, archived: [] });
});
