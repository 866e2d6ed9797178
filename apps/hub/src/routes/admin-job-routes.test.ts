import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraftClient } from '@graft/client';
import { type JobInfo, JobList, RetriedJob } from '@graft/protocol';
import { apiRequest, devLogin, eventually, expectApiError, type HubFixture, startHubFixture } from '@graft/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

let fx: HubFixture;
let db: pg.Client;
let dir: string;
/** A regular file where the log archive expects a directory: archiving fails with ENOTDIR until it is removed. */
let blocker: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'graft-test-jobs-'));
  blocker = join(dir, 'blocker');
  writeFileSync(blocker, 'not a directory');
  fx = await startHubFixture(inject('pgAdminUrl'), { env: { GRAFT_LOG_ARCHIVE_DIR: join(blocker, 'archive') } });
  db = new pg.Client({ connectionString: fx.database.url });
  await db.connect();
});
afterAll(async () => {
  await db?.end();
  await fx?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const jobs = async (query: string): Promise<JobInfo[]> => {
  const r = await apiRequest(fx.hub.url, fx.hub.adminToken, 'GET', `/api/v1/admin/jobs${query}`);
  expect(r.status).toBe(200);
  return JobList.strict().parse(r.body).items;
};

describe('admin jobs API', () => {
  it("lists the hub's five jobs among the completed runs (each runs once at start)", async () => {
    await eventually(
      async () => {
        const names = new Set((await jobs('?state=completed&limit=500')).map((j) => j.name));
        expect([...names].sort()).toEqual(['join-token-sweep', 'liveness', 'log-archival', 'log-retention', 'placement']);
      },
      { timeoutMs: 10_000 },
    );
  });

  it('shows a job that failed all its attempts with the reason (the default list), and retries it once the cause is fixed', async () => {
    // A finished log of a deleted agent, ready for the archive (which cannot be written).
    const { project } = await new GraftClient({ baseUrl: fx.hub.url, token: fx.hub.adminToken }).registerProject({ name: 'jobs' });
    const agentId = randomUUID();
    await db.query('INSERT INTO agent_logs (agent_id, project_id, stored_seq, closed_seq, bytes) VALUES ($1, $2, 1, 1, 5)', [agentId, project.id]);
    await db.query("INSERT INTO agent_log_chunks (agent_id, seq, stream, at, data) VALUES ($1, 1, 'stdout', now(), 'hello')", [agentId]);

    const failed = await eventually(
      async () => {
        const items = await jobs('');
        const archival = items.filter((j) => j.name === 'log-archival');
        expect(archival.length).toBeGreaterThan(0);
        return archival;
      },
      { timeoutMs: 15_000, intervalMs: 250 },
    );
    const [newest] = failed;
    if (!newest) throw new Error('no failed run');
    expect(newest).toMatchObject({ state: 'failed', attemptsMade: 3, failedReason: expect.stringContaining('ENOTDIR'), finishedAt: expect.any(String) });
    // Only failed runs without ?state.
    expect((await jobs('?limit=500')).every((j) => j.state === 'failed')).toBe(true);

    rmSync(blocker);
    const retried = await apiRequest(fx.hub.url, fx.hub.adminToken, 'POST', `/api/v1/admin/jobs/${encodeURIComponent(newest.id)}/retry`);
    expect(retried.status).toBe(202);
    expect(RetriedJob.strict().parse(retried.body)).toEqual({ id: newest.id, state: 'waiting' });
    await eventually(
      async () => {
        expect((await jobs('?state=failed&limit=500')).map((j) => j.id)).not.toContain(newest.id);
        expect((await jobs('?state=completed&limit=500')).find((j) => j.id === newest.id)).toMatchObject({ name: 'log-archival', state: 'completed', attemptsMade: 1 });
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    // The log went to the archive after all (by the retried run or the next scheduled one).
    await eventually(() => expect(existsSync(join(blocker, 'archive', project.id, agentId)) && readdirSync(join(blocker, 'archive', project.id, agentId)).length).toBeGreaterThan(0), {
      timeoutMs: 10_000,
    });
    // Retrying a run that is no longer failed is a conflict.
    expectApiError(await apiRequest(fx.hub.url, fx.hub.adminToken, 'POST', `/api/v1/admin/jobs/${encodeURIComponent(newest.id)}/retry`), 409, 'conflict');
  });

  it('refuses bad queries (400), non-admins (403) and unknown runs (404)', async () => {
    for (const q of ['?state=broken', '?limit=0', '?limit=501', '?limit=x', '?cursor=abc']) {
      expectApiError(await apiRequest(fx.hub.url, fx.hub.adminToken, 'GET', `/api/v1/admin/jobs${q}`), 400, 'validation_error');
    }
    const user = await devLogin(fx.hub.url, 'jobs-user@example.com');
    expectApiError(await apiRequest(fx.hub.url, user.token, 'GET', '/api/v1/admin/jobs'), 403, 'forbidden');
    const [done] = await jobs('?state=completed&limit=1');
    if (!done) throw new Error('no completed run');
    expectApiError(await apiRequest(fx.hub.url, user.token, 'POST', `/api/v1/admin/jobs/${encodeURIComponent(done.id)}/retry`), 403, 'forbidden');
    expectApiError(await apiRequest(fx.hub.url, fx.hub.adminToken, 'POST', '/api/v1/admin/jobs/no-such-run/retry'), 404, 'not_found');
    expectApiError(await apiRequest(fx.hub.url, fx.hub.adminToken, 'POST', `/api/v1/admin/jobs/${'x'.repeat(201)}/retry`), 400, 'validation_error');
  });
});
