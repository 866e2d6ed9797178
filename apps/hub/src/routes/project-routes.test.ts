import { GraftClient } from '@graft/client';
import type { ErrorBody, Page, Project, ProjectMember, RegisterProjectResponse, SecretMeta } from '@graft/protocol';
import { apiRequest, devLogin, expectApiError, type HubFixture, startHubFixture, waitUntil } from '@graft/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

let fx: HubFixture;
let base: string;
let admin: GraftClient;
let db: pg.Client;
/** Every secret value and API token used in this file, checked against the hub's output at the end. */
const mustNeverBePrinted: string[] = [];

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  base = fx.hub.url;
  admin = new GraftClient({ baseUrl: base, token: fx.hub.adminToken });
  mustNeverBePrinted.push(fx.hub.adminToken);
  db = new pg.Client({ connectionString: fx.database.url });
  await db.connect();
});
afterAll(async () => {
  await db?.end();
  await fx?.stop();
});

/** Raw request against this file's hub; `token: null` sends no Authorization header. */
const api = <T = unknown>(token: string | null, method: string, path: string, body?: unknown) => apiRequest<T>(base, token, method, path, body);
const expectError = expectApiError;
const login = (email: string) => devLogin(base, email);

const UUID_V5 = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function allPages<T>(fetchPage: (cursor: string | undefined) => Promise<Page<T>>): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let cursor: string | undefined;
  for (let pages = 1; pages < 100; pages++) {
    const page = await fetchPage(cursor);
    items.push(...page.items);
    if (page.nextCursor === null) return { items, pages };
    cursor = page.nextCursor;
  }
  throw new Error('paging did not terminate');
}

describe('POST /projects/register', () => {
  it('registers a project without a git remote under a fresh UUIDv7, each time a new one', async () => {
    const u = await login('reg-plain@example.com');
    const a = await api<RegisterProjectResponse>(u.token, 'POST', '/api/v1/projects/register', { name: 'scratch', labels: { team: 'core' } });
    expect(a.status).toBe(201);
    expect(a.body.created).toBe(true);
    expect(a.body.project).toMatchObject({ name: 'scratch', gitRemote: null, labels: { team: 'core' }, role: 'admin', createdBy: u.user.id });
    expect(a.body.project.id).toMatch(UUID_V7);
    const b = await api<RegisterProjectResponse>(u.token, 'POST', '/api/v1/projects/register', { name: 'scratch' });
    expect(b.status).toBe(201);
    expect(b.body.project.id).not.toBe(a.body.project.id);
  });

  it('maps every spelling of one remote to the same UUIDv5 id; later registrations answer 200 created:false', async () => {
    const u = await login('reg-remote@example.com');
    const first = await api<RegisterProjectResponse>(u.token, 'POST', '/api/v1/projects/register', { name: 'repo', gitRemote: 'git@github.com:Acme/Repo.git' });
    expect(first.status).toBe(201);
    expect(first.body.created).toBe(true);
    expect(first.body.project.id).toMatch(UUID_V5);
    expect(first.body.project.gitRemote).toBe('github.com/acme/repo');
    for (const spelling of ['https://github.com/acme/repo', 'ssh://git@github.com/acme/repo/', 'git@github.com:Acme/Repo.git']) {
      const again = await api<RegisterProjectResponse>(u.token, 'POST', '/api/v1/projects/register', { name: 'repo-again', gitRemote: spelling });
      expect({ spelling, status: again.status, created: again.body.created, id: again.body.project.id }).toEqual({
        spelling,
        status: 200,
        created: false,
        id: first.body.project.id,
      });
      // Re-registering does not rename the existing project.
      expect(again.body.project.name).toBe('repo');
    }
    const other = await api<RegisterProjectResponse>(u.token, 'POST', '/api/v1/projects/register', { name: 'other', gitRemote: 'https://github.com/acme/other' });
    expect(other.status).toBe(201);
    expect(other.body.project.id).toMatch(UUID_V5);
    expect(other.body.project.id).not.toBe(first.body.project.id);
  });

  it('registers one project when the same caller races to register one remote', async () => {
    const u = await login('reg-race@example.com');
    const spellings = ['https://github.com/race/repo', 'git@github.com:race/repo.git', 'ssh://git@github.com/race/repo', 'https://github.com/Race/Repo.git', 'github.com:race/repo'];
    const replies = await Promise.all(spellings.map((gitRemote) => api<RegisterProjectResponse>(u.token, 'POST', '/api/v1/projects/register', { name: 'race', gitRemote })));
    expect(replies.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 201]);
    expect(new Set(replies.map((r) => r.body.project.id)).size).toBe(1);
    expect(replies.filter((r) => r.body.created)).toHaveLength(1);
    expect((await u.client.listMembers(replies[0]?.body.project.id ?? '')).items.map((m) => m.role)).toEqual(['admin']);
  });

  it('gives a remote to exactly one of two different users racing to register it', async () => {
    const a = await login('reg-race-a@example.com');
    const b = await login('reg-race-b@example.com');
    const [ra, rb] = await Promise.all([
      api(a.token, 'POST', '/api/v1/projects/register', { name: 'contested', gitRemote: 'https://example.org/x/contested' }),
      api(b.token, 'POST', '/api/v1/projects/register', { name: 'contested', gitRemote: 'git@example.org:x/contested.git' }),
    ]);
    const winner = ra.status === 201 ? a : b;
    const loser = winner === a ? rb : ra;
    expect([ra.status, rb.status].sort()).toEqual([201, 409]);
    expectError(loser, 409, 'conflict');
    expect((await winner.client.listProjects()).items.map((p) => p.name)).toEqual(['contested']);
  });

  it('answers 409 conflict to a non-member registering an existing remote, and does not make them a member', async () => {
    const owner = await login('reg-owner@example.com');
    const stranger = await login('reg-stranger@example.com');
    const { project } = await owner.client.registerProject({ name: 'taken', gitRemote: 'https://gitlab.example.com/team/taken.git' });
    const r = await api(stranger.token, 'POST', '/api/v1/projects/register', { name: 'mine', gitRemote: 'git@gitlab.example.com:team/taken' });
    expectError(r, 409, 'conflict');
    expectError(await api(stranger.token, 'GET', `/api/v1/projects/${project.id}`), 404, 'not_found');
    // A platform admin who is not a member is told about the existing project instead.
    const adminReg = await api<RegisterProjectResponse>(fx.hub.adminToken, 'POST', '/api/v1/projects/register', { name: 'x', gitRemote: 'https://gitlab.example.com/team/taken' });
    expect(adminReg.status).toBe(200);
    expect(adminReg.body).toMatchObject({ created: false, project: { id: project.id, role: null } });
  });

  it('rejects a gitRemote that is not a remote, and bad names, with validation_error', async () => {
    const u = await login('reg-bad@example.com');
    expectError(await api(u.token, 'POST', '/api/v1/projects/register', { name: 'x', gitRemote: 'not a remote' }), 400, 'validation_error');
    expectError(await api(u.token, 'POST', '/api/v1/projects/register', { name: 'Bad Name' }), 400, 'validation_error');
    expectError(await api(u.token, 'POST', '/api/v1/projects/register', {}), 400, 'validation_error');
    expect((await u.client.listProjects()).items).toEqual([]);
  });
});

describe('GET /projects', () => {
  it('lists only the projects the caller may see, page by page; admins see all', async () => {
    const alice = await login('list-alice@example.com');
    const bob = await login('list-bob@example.com');
    const aliceIds: string[] = [];
    for (let i = 0; i < 5; i++) aliceIds.push((await alice.client.registerProject({ name: `alice-${i}` })).project.id);
    const bobId = (await bob.client.registerProject({ name: 'bob-0' })).project.id;

    const seen = await allPages((cursor) => alice.client.listProjects({ limit: 2, ...(cursor ? { cursor } : {}) }));
    expect(seen.pages).toBe(3);
    const ids = seen.items.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual([...aliceIds].sort());
    expect(seen.items.every((p) => p.role === 'admin')).toBe(true);

    expect((await bob.client.listProjects()).items.map((p) => p.id)).toEqual([bobId]);

    const everything = await allPages((cursor) => admin.listProjects({ limit: 3, ...(cursor ? { cursor } : {}) }));
    const adminIds = everything.items.map((p) => p.id);
    expect(adminIds).toEqual(expect.arrayContaining([...aliceIds, bobId]));
    const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM projects');
    expect(adminIds).toHaveLength(Number(rows[0]?.n));
    expect(everything.items.find((p) => p.id === bobId)?.role).toBeNull();
  });
});

describe('GET/PATCH/DELETE /projects/:id', () => {
  it('reports agent statistics by phase and the last activity', async () => {
    const u = await login('stats@example.com');
    const { project } = await u.client.registerProject({ name: 'stats' });
    const empty = await u.client.getProject(project.id);
    expect(empty.stats).toEqual({ agentsByPhase: {}, agentsTotal: 0, lastActivityAt: null });
    expect(empty.role).toBe('admin');

    await u.client.createTemplate({ name: 'tpl', harness: 'command', command: ['true'], projectId: project.id });
    const a1 = await u.client.createAgent({ projectId: project.id, name: 'one', template: 'tpl' });
    const a2 = await u.client.createAgent({ projectId: project.id, name: 'two', template: 'tpl' });
    await u.client.agentAction(a2.id, 'stop');
    const after = await u.client.getProject(project.id);
    expect(after.stats.agentsByPhase).toEqual({ created: 1, stopped: 1 });
    expect(after.stats.agentsTotal).toBe(2);
    const latest = (await u.client.getAgent(a2.id)).updatedAt;
    expect(after.stats.lastActivityAt).toBe(latest);
    expect(Date.parse(after.stats.lastActivityAt ?? '')).toBeGreaterThanOrEqual(Date.parse(a1.createdAt));
  });

  it('answers 404 not_found for unknown ids and validation_error for malformed ones', async () => {
    const u = await login('get-missing@example.com');
    expectError(await api(u.token, 'GET', '/api/v1/projects/00000000-0000-4000-8000-000000000000'), 404, 'not_found');
    expectError(await api(fx.hub.adminToken, 'GET', '/api/v1/projects/00000000-0000-4000-8000-000000000000'), 404, 'not_found');
    expectError(await api(u.token, 'GET', '/api/v1/projects/not-a-uuid'), 400, 'validation_error');
  });

  it('lets only project admins PATCH', async () => {
    const owner = await login('patch-owner@example.com');
    const member = await login('patch-member@example.com');
    const stranger = await login('patch-stranger@example.com');
    const { project } = await owner.client.registerProject({ name: 'patchable', labels: { a: '1' } });
    await owner.client.putMember(project.id, member.user.id, 'member');

    expectError(await api(member.token, 'PATCH', `/api/v1/projects/${project.id}`, { name: 'hijacked' }), 403, 'forbidden');
    expectError(await api(stranger.token, 'PATCH', `/api/v1/projects/${project.id}`, { name: 'hijacked' }), 404, 'not_found');
    expectError(await api(owner.token, 'PATCH', `/api/v1/projects/${project.id}`, {}), 400, 'validation_error');
    expectError(await api(owner.token, 'PATCH', `/api/v1/projects/${project.id}`, { name: 'Not Valid' }), 400, 'validation_error');

    const renamed = await api<Project>(owner.token, 'PATCH', `/api/v1/projects/${project.id}`, { name: 'patched', labels: { b: '2' } });
    expect(renamed.status).toBe(200);
    expect(renamed.body).toMatchObject({ id: project.id, name: 'patched', labels: { b: '2' }, role: 'admin' });
    expect(Date.parse(renamed.body.updatedAt)).toBeGreaterThanOrEqual(Date.parse(project.updatedAt));
    const byAdmin = await api<Project>(fx.hub.adminToken, 'PATCH', `/api/v1/projects/${project.id}`, { labels: {} });
    expect(byAdmin.status).toBe(200);
    expect(byAdmin.body).toMatchObject({ name: 'patched', labels: {} });
    expect((await member.client.getProject(project.id)).name).toBe('patched');
  });

  it('refuses DELETE with 409 while an agent is active, deletes once the agent is gone, then 404', async () => {
    const owner = await login('delete-owner@example.com');
    const member = await login('delete-member@example.com');
    const { project } = await owner.client.registerProject({ name: 'doomed' });
    await owner.client.putMember(project.id, member.user.id, 'member');
    const tpl = await owner.client.createTemplate({ name: 'tpl', harness: 'command', command: ['true'], projectId: project.id });
    const agent = await owner.client.createAgent({ projectId: project.id, name: 'blocker', template: 'tpl' });
    expect(agent.phase).toBe('created');

    expectError(await api(member.token, 'DELETE', `/api/v1/projects/${project.id}`), 403, 'forbidden');
    const refused = await api<ErrorBody>(owner.token, 'DELETE', `/api/v1/projects/${project.id}`);
    expectError(refused, 409, 'conflict');
    expect(refused.body.error.details).toEqual({ activeAgents: 1 });
    expect((await owner.client.getProject(project.id)).stats.agentsTotal).toBe(1);

    expect((await api(owner.token, 'DELETE', `/api/v1/agents/${agent.id}`)).status).toBe(204);
    expectError(await api(owner.token, 'GET', `/api/v1/agents/${agent.id}`), 404, 'not_found');
    expect((await api(owner.token, 'DELETE', `/api/v1/projects/${project.id}`)).status).toBe(204);
    expectError(await api(owner.token, 'GET', `/api/v1/projects/${project.id}`), 404, 'not_found');
    expectError(await api(owner.token, 'DELETE', `/api/v1/projects/${project.id}`), 404, 'not_found');
    expectError(await api(owner.token, 'GET', `/api/v1/templates/${tpl.id}`), 404, 'not_found');
    expect((await owner.client.listProjects()).items.map((p) => p.id)).not.toContain(project.id);
  });

  it('deletes a project whose agents are all stopped, with its agents and templates', async () => {
    const u = await login('delete-stopped@example.com');
    const { project } = await u.client.registerProject({ name: 'stopped-only' });
    await u.client.createTemplate({ name: 'tpl', harness: 'command', command: ['true'], projectId: project.id });
    const agent = await u.client.createAgent({ projectId: project.id, name: 'idle', template: 'tpl' });
    expect((await u.client.agentAction(agent.id, 'stop')).phase).toBe('stopped');
    expect((await api(u.token, 'DELETE', `/api/v1/projects/${project.id}`)).status).toBe(204);
    const left = await db.query('SELECT 1 FROM agents WHERE project_id = $1 UNION ALL SELECT 1 FROM templates WHERE project_id = $1', [project.id]);
    expect(left.rowCount).toBe(0);
  });
});

describe('project members', () => {
  it('adds members, changes their role, lists and removes them', async () => {
    const owner = await login('members-owner@example.com');
    const ann = await login('members-ann@example.com');
    const ben = await login('members-ben@example.com');
    const { project } = await owner.client.registerProject({ name: 'members' });
    const path = `/api/v1/projects/${project.id}/members`;

    const added = await api<ProjectMember>(owner.token, 'PUT', `${path}/${ann.user.id}`, { role: 'member' });
    expect(added.status).toBe(200);
    expect(added.body).toMatchObject({ userId: ann.user.id, email: 'members-ann@example.com', role: 'member' });
    expect((await ann.client.getProject(project.id)).role).toBe('member');
    await owner.client.putMember(project.id, ben.user.id, 'viewer');

    const changed = await api<ProjectMember>(owner.token, 'PUT', `${path}/${ann.user.id}`, { role: 'viewer' });
    expect(changed.body.role).toBe('viewer');
    expect(changed.body.createdAt).toBe(added.body.createdAt);
    expect((await ann.client.getProject(project.id)).role).toBe('viewer');
    // Now a viewer, Ann may read the member list but not change it.
    expectError(await api(ann.token, 'PUT', `${path}/${ben.user.id}`, { role: 'admin' }), 403, 'forbidden');

    const listed = await allPages((cursor) => ann.client.listMembers(project.id, { limit: 2, ...(cursor ? { cursor } : {}) }));
    expect(listed.pages).toBe(2);
    expect(Object.fromEntries(listed.items.map((m) => [m.email, m.role]))).toEqual({
      'members-owner@example.com': 'admin',
      'members-ann@example.com': 'viewer',
      'members-ben@example.com': 'viewer',
    });

    expect((await api(owner.token, 'DELETE', `${path}/${ann.user.id}`)).status).toBe(204);
    expectError(await api(ann.token, 'GET', `/api/v1/projects/${project.id}`), 404, 'not_found');
    expectError(await api(owner.token, 'DELETE', `${path}/${ann.user.id}`), 404, 'not_found');
    expect((await owner.client.listMembers(project.id)).items.map((m) => m.email).sort()).toEqual(['members-ben@example.com', 'members-owner@example.com']);
  });

  it('never removes or demotes the last admin (409), but allows it once there is another', async () => {
    const owner = await login('lastadmin-owner@example.com');
    const co = await login('lastadmin-co@example.com');
    const { project } = await owner.client.registerProject({ name: 'last-admin' });
    const path = `/api/v1/projects/${project.id}/members`;
    expectError(await api(owner.token, 'PUT', `${path}/${owner.user.id}`, { role: 'member' }), 409, 'conflict');
    expectError(await api(owner.token, 'DELETE', `${path}/${owner.user.id}`), 409, 'conflict');
    expectError(await api(fx.hub.adminToken, 'DELETE', `${path}/${owner.user.id}`), 409, 'conflict');
    expect((await owner.client.getProject(project.id)).role).toBe('admin');

    await owner.client.putMember(project.id, co.user.id, 'admin');
    const demoted = await api<ProjectMember>(owner.token, 'PUT', `${path}/${owner.user.id}`, { role: 'member' });
    expect(demoted.status).toBe(200);
    expect(demoted.body.role).toBe('member');
    expectError(await api(co.token, 'PUT', `${path}/${co.user.id}`, { role: 'viewer' }), 409, 'conflict');
    expectError(await api(co.token, 'DELETE', `${path}/${co.user.id}`), 409, 'conflict');
  });

  it('lets only one of two admins demoting each other at the same time succeed', async () => {
    const a = await login('race-admin-a@example.com');
    const b = await login('race-admin-b@example.com');
    const { project } = await a.client.registerProject({ name: 'admin-race' });
    await a.client.putMember(project.id, b.user.id, 'admin');
    for (let round = 0; round < 3; round++) {
      const [ra, rb] = await Promise.all([
        api(a.token, 'PUT', `/api/v1/projects/${project.id}/members/${b.user.id}`, { role: 'member' }),
        api(b.token, 'PUT', `/api/v1/projects/${project.id}/members/${a.user.id}`, { role: 'member' }),
      ]);
      // Exactly one wins. The loser is refused either by the last-admin rule (409, when its role
      // check ran before the winner committed) or as no longer an admin (403, when it ran after).
      const statuses = [ra?.status, rb?.status].sort();
      expect(statuses[0]).toBe(200);
      expect([403, 409]).toContain(statuses[1]);
      const admins = (await admin.listMembers(project.id)).items.filter((m) => m.role === 'admin');
      expect(admins).toHaveLength(1);
      // Restore two admins for the next round.
      const survivor = admins[0]?.userId === a.user.id ? a : b;
      const other = survivor === a ? b : a;
      await survivor.client.putMember(project.id, other.user.id, 'admin');
    }
  });

  it('answers 404 for a user that does not exist and validation_error for bad input', async () => {
    const owner = await login('members-missing@example.com');
    const { project } = await owner.client.registerProject({ name: 'missing-user' });
    const path = `/api/v1/projects/${project.id}/members`;
    expectError(await api(owner.token, 'PUT', `${path}/00000000-0000-4000-8000-000000000000`, { role: 'member' }), 404, 'not_found');
    expectError(await api(owner.token, 'PUT', `${path}/not-a-uuid`, { role: 'member' }), 400, 'validation_error');
    expectError(await api(owner.token, 'PUT', `${path}/${owner.user.id}`, { role: 'owner' }), 400, 'validation_error');
    expect((await owner.client.listMembers(project.id)).items).toHaveLength(1);
  });
});

describe('project secrets', () => {
  it('stores secrets encrypted, lists only metadata, bumps the version on overwrite and deletes them', async () => {
    const owner = await login('secrets-owner@example.com');
    const member = await login('secrets-member@example.com');
    const viewer = await login('secrets-viewer@example.com');
    const { project } = await owner.client.registerProject({ name: 'secretive' });
    await owner.client.putMember(project.id, member.user.id, 'member');
    await owner.client.putMember(project.id, viewer.user.id, 'viewer');
    const path = `/api/v1/projects/${project.id}/secrets`;
    const v1 = 'plaintext-secret-value-one-5f3a9c';
    const v2 = 'plaintext-secret-value-two-81be47';
    mustNeverBePrinted.push(v1, v2);

    const put1 = await api<SecretMeta>(owner.token, 'PUT', `${path}/API_TOKEN`, { value: v1 });
    expect(put1.status).toBe(200);
    expect(put1.body).toMatchObject({ name: 'API_TOKEN', version: 1, updatedBy: owner.user.id });
    expect(put1.text).not.toContain(v1);
    const put2 = await api<SecretMeta>(owner.token, 'PUT', `${path}/API_TOKEN`, { value: v2 });
    expect(put2.body).toMatchObject({ name: 'API_TOKEN', version: 2 });
    expect(put2.body.createdAt).toBe(put1.body.createdAt);

    expectError(await api(member.token, 'PUT', `${path}/API_TOKEN`, { value: 'member-overwrite' }), 403, 'forbidden');
    expectError(await api(viewer.token, 'GET', path), 403, 'forbidden');

    const listed = await api<Page<SecretMeta>>(member.token, 'GET', path);
    expect(listed.status).toBe(200);
    expect(listed.text).not.toContain(v1);
    expect(listed.text).not.toContain(v2);
    expect(listed.body.items).toHaveLength(1);
    expect(Object.keys(listed.body.items[0] ?? {}).sort()).toEqual(['createdAt', 'name', 'updatedAt', 'updatedBy', 'version']);
    expect(listed.body.items[0]).toMatchObject({ name: 'API_TOKEN', version: 2 });

    const raw = await db.query<{ value_enc: string; version: number }>('SELECT value_enc, version FROM project_secrets WHERE project_id = $1 AND name = $2', [project.id, 'API_TOKEN']);
    const enc = raw.rows[0]?.value_enc ?? '';
    expect(enc.length).toBeGreaterThan(0);
    expect(raw.rows[0]?.version).toBe(2);
    for (const v of [v1, v2]) {
      expect(enc).not.toContain(v);
      expect(enc).not.toContain(Buffer.from(v).toString('base64'));
      expect(enc).not.toContain(Buffer.from(v).toString('hex'));
    }

    expectError(await api(owner.token, 'PUT', `${path}/1BAD`, { value: 'x' }), 400, 'validation_error');
    expectError(await api(owner.token, 'PUT', `${path}/OK_NAME`, { value: '' }), 400, 'validation_error');

    expectError(await api(member.token, 'DELETE', `${path}/API_TOKEN`), 403, 'forbidden');
    expect((await api(owner.token, 'DELETE', `${path}/API_TOKEN`)).status).toBe(204);
    expect((await owner.client.listSecrets(project.id)).items).toEqual([]);
    expectError(await api(owner.token, 'DELETE', `${path}/API_TOKEN`), 404, 'not_found');
    const gone = await db.query('SELECT 1 FROM project_secrets WHERE project_id = $1', [project.id]);
    expect(gone.rowCount).toBe(0);
  });

  it('pages through secret names', async () => {
    const owner = await login('secrets-paging@example.com');
    const { project } = await owner.client.registerProject({ name: 'many-secrets' });
    const names = ['A_ONE', 'B_TWO', 'C_THREE', 'D_FOUR', 'E_FIVE'];
    for (const n of names) await owner.client.putSecret(project.id, n, `value-of-${n}-secret`);
    mustNeverBePrinted.push(...names.map((n) => `value-of-${n}-secret`));
    const all = await allPages((cursor) => owner.client.listSecrets(project.id, { limit: 2, ...(cursor ? { cursor } : {}) }));
    expect(all.pages).toBe(3);
    expect(all.items.map((s) => s.name)).toEqual(names);
  });
});

describe('hub output', () => {
  // Runs last: by now this file has created keys, tokens and secrets.
  it('never contains a secret value or an API token', async () => {
    const u = await login('output-check@example.com');
    const key = await u.client.createApiKey({ name: 'printed?' });
    mustNeverBePrinted.push(key.token, u.token);
    await u.client.withToken(key.token).me();
    // Log lines reach this process through a pipe, possibly after the responses they belong to.
    await waitUntil(async () => fx.hub.logs.some((l) => l.event === 'secret.put'), 5_000);
    const out = fx.hub.output();
    expect(out.length).toBeGreaterThan(0);
    for (const s of mustNeverBePrinted) expect(out.includes(s), `hub output contains ${s.slice(0, 12)}…`).toBe(false);
  });
});
