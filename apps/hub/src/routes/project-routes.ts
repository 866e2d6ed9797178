import {
  ACTIVE_PHASES,
  GraftError,
  IdParams,
  MemberParams,
  PageQuery,
  pageOf,
  Project,
  ProjectDetail,
  ProjectMember,
  PutMemberRequest,
  PutSecretRequest,
  RegisterProjectRequest,
  RegisterProjectResponse,
  SecretMeta,
  SecretParams,
  UpdateProjectRequest,
} from '@graft/protocol';
import type { Database } from '@graft/db';
import { sql, type Transaction } from 'kysely';
import { asUser, projectRole, requireProjectRole } from '../domain/access.js';
import { decodeCursor, isUuidKey, toPage } from '../domain/cursor.js';
import { isPlausibleGitRemote, normaliseGitRemote, projectIdForRemote } from '../domain/git-remote.js';
import { toProject } from '../domain/mappers.js';
import { projectSecretAad } from '../domain/project-secrets.js';
import { uuidv7 } from '../domain/uuid.js';
import type { HubContext } from '../hub-context.js';
import { route, type RouteSpec } from '../http/route.js';

/** Projects, their members and their secrets. */
export function projectRoutes(ctx: HubContext): RouteSpec[] {
  const { db } = ctx;
  return [
    route({
      method: 'get',
      path: '/api/v1/projects',
      summary: 'List the projects the caller may see',
      tag: 'projects',
      auth: 'user',
      query: PageQuery,
      responses: { 200: pageOf(Project) },
      handler: async ({ query, principal }) => {
        const user = asUser(principal);
        const after = decodeCursor(query.cursor, isUuidKey);
        let q = db
          .selectFrom('projects as p')
          .leftJoin('project_members as m', (j) => j.onRef('m.project_id', '=', 'p.id').on('m.user_id', '=', user.userId))
          .selectAll('p')
          .select('m.role');
        if (!user.isAdmin) q = q.where('m.role', 'is not', null);
        if (after) q = q.where('p.id', '>', after);
        const rows = await q.orderBy('p.id').limit(query.limit + 1).execute();
        return { status: 200, body: toPage(rows, query.limit, (r) => r.id, (r) => toProject(r, r.role ?? null)) };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/projects/register',
      summary: 'Register a project; the same git remote always maps to the same project id',
      tag: 'projects',
      auth: 'user',
      body: RegisterProjectRequest,
      responses: { 201: RegisterProjectResponse, 200: RegisterProjectResponse },
      handler: async ({ body, principal }) => {
        const user = asUser(principal);
        let remote: string | null = null;
        if (body.gitRemote !== undefined) {
          if (!isPlausibleGitRemote(body.gitRemote)) {
            throw new GraftError('validation_error', 'gitRemote is not a git URL, scp-style remote (host:path) or absolute path', { field: 'gitRemote' });
          }
          remote = normaliseGitRemote(body.gitRemote);
        }
        const id = remote ? projectIdForRemote(remote) : uuidv7();
        const created = await db.transaction().execute(async (trx) => {
          const inserted = await trx
            .insertInto('projects')
            .values({ id, name: body.name, git_remote: remote, clone_url: remote === null ? null : (body.gitRemote ?? null), labels: JSON.stringify(body.labels ?? {}), created_by: user.userId })
            .onConflict((oc) => oc.doNothing())
            .returningAll()
            .executeTakeFirst();
          if (inserted) await trx.insertInto('project_members').values({ project_id: id, user_id: user.userId, role: 'admin' }).execute();
          return inserted !== undefined;
        });
        const role = await projectRole(db, user, id);
        if (!created && role === null && !user.isAdmin) {
          throw new GraftError('conflict', 'a project with this git remote is already registered; ask one of its admins to add you', { field: 'gitRemote' });
        }
        const row = await db.selectFrom('projects').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
        if (created) ctx.log.info('project.registered', { projectId: id, userId: user.userId });
        return { status: created ? 201 : 200, body: { project: toProject(row, role), created } };
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/projects/:id',
      summary: 'A project with statistics: agents by phase and last activity',
      tag: 'projects',
      auth: 'user',
      params: IdParams,
      responses: { 200: ProjectDetail },
      handler: async ({ params, principal }) => {
        const role = await requireProjectRole(db, principal, params.id, 'viewer');
        const row = await db.selectFrom('projects').selectAll().where('id', '=', params.id).executeTakeFirstOrThrow();
        const phases = await db
          .selectFrom('agents')
          .select(['phase', sql<string>`count(*)`.as('n'), sql<Date | null>`max(updated_at)`.as('last')])
          .where('project_id', '=', params.id)
          .groupBy('phase')
          .execute();
        const agentsByPhase: Record<string, number> = {};
        let lastActivity: Date | null = null;
        for (const p of phases) {
          agentsByPhase[p.phase] = Number(p.n);
          if (p.last && (!lastActivity || p.last > lastActivity)) lastActivity = p.last;
        }
        const agentsTotal = Object.values(agentsByPhase).reduce((a, b) => a + b, 0);
        return { status: 200, body: { ...toProject(row, role), stats: { agentsByPhase, agentsTotal, lastActivityAt: lastActivity?.toISOString() ?? null } } };
      },
    }),
    route({
      method: 'patch',
      path: '/api/v1/projects/:id',
      summary: 'Rename a project, replace its labels, set auto-suspend of stalled agents or log retention (project admin)',
      tag: 'projects',
      auth: 'user',
      params: IdParams,
      body: UpdateProjectRequest,
      responses: { 200: Project },
      handler: async ({ params, body, principal }) => {
        const role = await requireProjectRole(db, principal, params.id, 'admin');
        const row = await db
          .updateTable('projects')
          .set({
            ...(body.name !== undefined ? { name: body.name } : {}),
            ...(body.labels !== undefined ? { labels: JSON.stringify(body.labels) } : {}),
            ...(body.autoSuspendStalled !== undefined ? { auto_suspend_stalled: body.autoSuspendStalled } : {}),
            ...(body.logRetentionDays !== undefined ? { log_retention_days: body.logRetentionDays } : {}),
            updated_at: new Date(),
          })
          .where('id', '=', params.id)
          .returningAll()
          .executeTakeFirst();
        if (!row) throw new GraftError('not_found', 'project not found');
        return { status: 200, body: toProject(row, role) };
      },
    }),
    route({
      method: 'delete',
      path: '/api/v1/projects/:id',
      summary: 'Delete a project (project admin); refused while any of its agents is active',
      tag: 'projects',
      auth: 'user',
      params: IdParams,
      responses: { 204: null },
      handler: async ({ params, principal }) => {
        await requireProjectRole(db, principal, params.id, 'admin');
        await db.transaction().execute(async (trx) => {
          // Locking the row serialises with agent inserts (their FK check takes a key-share lock).
          const locked = await trx.selectFrom('projects').select('id').where('id', '=', params.id).forUpdate().executeTakeFirst();
          if (!locked) throw new GraftError('not_found', 'project not found');
          const active = await trx
            .selectFrom('agents')
            .select(sql<string>`count(*)`.as('n'))
            .where('project_id', '=', params.id)
            .where('phase', 'in', [...ACTIVE_PHASES])
            .executeTakeFirstOrThrow();
          if (Number(active.n) > 0) {
            throw new GraftError('conflict', `project has ${active.n} active agent(s); stop or delete them first`, { activeAgents: Number(active.n) });
          }
          await trx.deleteFrom('agents').where('project_id', '=', params.id).execute();
          await trx.deleteFrom('templates').where('project_id', '=', params.id).execute();
          await trx.deleteFrom('projects').where('id', '=', params.id).execute();
        });
        ctx.log.info('project.deleted', { projectId: params.id });
        return { status: 204 };
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/projects/:id/members',
      summary: 'List project members',
      tag: 'projects',
      auth: 'user',
      params: IdParams,
      query: PageQuery,
      responses: { 200: pageOf(ProjectMember) },
      handler: async ({ params, query, principal }) => {
        await requireProjectRole(db, principal, params.id, 'viewer');
        const after = decodeCursor(query.cursor, isUuidKey);
        let q = db
          .selectFrom('project_members as m')
          .innerJoin('users as u', 'u.id', 'm.user_id')
          .select(['m.user_id', 'u.email', 'm.role', 'm.created_at'])
          .where('m.project_id', '=', params.id);
        if (after) q = q.where('m.user_id', '>', after);
        const rows = await q.orderBy('m.user_id').limit(query.limit + 1).execute();
        return {
          status: 200,
          body: toPage(rows, query.limit, (r) => r.user_id, (r) => ({ userId: r.user_id, email: r.email, role: r.role, createdAt: r.created_at.toISOString() })),
        };
      },
    }),
    route({
      method: 'put',
      path: '/api/v1/projects/:id/members/:userId',
      summary: "Add a member or change a member's role (project admin)",
      tag: 'projects',
      auth: 'user',
      params: MemberParams,
      body: PutMemberRequest,
      responses: { 200: ProjectMember },
      handler: async ({ params, body, principal }) => {
        await requireProjectRole(db, principal, params.id, 'admin');
        const user = await db.selectFrom('users').select(['id', 'email']).where('id', '=', params.userId).executeTakeFirst();
        if (!user) throw new GraftError('not_found', 'user not found');
        const row = await db.transaction().execute(async (trx) => {
          await trx.selectFrom('projects').select('id').where('id', '=', params.id).forUpdate().execute();
          if (body.role !== 'admin') await refuseLastAdminLoss(trx, params.id, params.userId);
          return trx
            .insertInto('project_members')
            .values({ project_id: params.id, user_id: params.userId, role: body.role })
            .onConflict((oc) => oc.columns(['project_id', 'user_id']).doUpdateSet({ role: body.role }))
            .returningAll()
            .executeTakeFirstOrThrow();
        });
        return { status: 200, body: { userId: row.user_id, email: user.email, role: row.role, createdAt: row.created_at.toISOString() } };
      },
    }),
    route({
      method: 'delete',
      path: '/api/v1/projects/:id/members/:userId',
      summary: 'Remove a member (project admin); the last admin cannot be removed',
      tag: 'projects',
      auth: 'user',
      params: MemberParams,
      responses: { 204: null },
      handler: async ({ params, principal }) => {
        await requireProjectRole(db, principal, params.id, 'admin');
        await db.transaction().execute(async (trx) => {
          await trx.selectFrom('projects').select('id').where('id', '=', params.id).forUpdate().execute();
          await refuseLastAdminLoss(trx, params.id, params.userId);
          const r = await trx.deleteFrom('project_members').where('project_id', '=', params.id).where('user_id', '=', params.userId).executeTakeFirst();
          if (r.numDeletedRows === 0n) throw new GraftError('not_found', 'that user is not a member of this project');
        });
        return { status: 204 };
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/projects/:id/secrets',
      summary: 'List secret names and metadata (project member); values are never returned',
      tag: 'projects',
      auth: 'user',
      params: IdParams,
      query: PageQuery,
      responses: { 200: pageOf(SecretMeta) },
      handler: async ({ params, query, principal }) => {
        await requireProjectRole(db, principal, params.id, 'member');
        const after = decodeCursor(query.cursor, (k) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(k));
        let q = db.selectFrom('project_secrets').select(['name', 'version', 'created_at', 'updated_at', 'updated_by']).where('project_id', '=', params.id);
        if (after) q = q.where('name', '>', after);
        const rows = await q.orderBy('name').limit(query.limit + 1).execute();
        return {
          status: 200,
          body: toPage(rows, query.limit, (r) => r.name, (r) => ({ name: r.name, version: r.version, createdAt: r.created_at.toISOString(), updatedAt: r.updated_at.toISOString(), updatedBy: r.updated_by })),
        };
      },
    }),
    route({
      method: 'put',
      path: '/api/v1/projects/:id/secrets/:name',
      summary: 'Create or replace a secret (project admin); stored encrypted with AES-256-GCM',
      tag: 'projects',
      auth: 'user',
      params: SecretParams,
      body: PutSecretRequest,
      responses: { 200: SecretMeta },
      handler: async ({ params, body, principal }) => {
        await requireProjectRole(db, principal, params.id, 'admin');
        const user = asUser(principal);
        const valueEnc = ctx.box.seal(body.value, projectSecretAad(params.id, params.name));
        const row = await db
          .insertInto('project_secrets')
          .values({ project_id: params.id, name: params.name, value_enc: valueEnc, updated_by: user.userId })
          .onConflict((oc) =>
            oc.columns(['project_id', 'name']).doUpdateSet({ value_enc: valueEnc, updated_by: user.userId, updated_at: new Date(), version: sql`project_secrets.version + 1` }),
          )
          .returning(['name', 'version', 'created_at', 'updated_at', 'updated_by'])
          .executeTakeFirstOrThrow();
        ctx.log.info('secret.put', { projectId: params.id, secret: params.name, version: row.version });
        return { status: 200, body: { name: row.name, version: row.version, createdAt: row.created_at.toISOString(), updatedAt: row.updated_at.toISOString(), updatedBy: row.updated_by } };
      },
    }),
    route({
      method: 'delete',
      path: '/api/v1/projects/:id/secrets/:name',
      summary: 'Delete a secret (project admin)',
      tag: 'projects',
      auth: 'user',
      params: SecretParams,
      responses: { 204: null },
      handler: async ({ params, principal }) => {
        await requireProjectRole(db, principal, params.id, 'admin');
        const r = await db.deleteFrom('project_secrets').where('project_id', '=', params.id).where('name', '=', params.name).executeTakeFirst();
        if (r.numDeletedRows === 0n) throw new GraftError('not_found', `secret ${params.name} not found`);
        ctx.log.info('secret.deleted', { projectId: params.id, secret: params.name });
        return { status: 204 };
      },
    }),
  ];
}

async function refuseLastAdminLoss(trx: Transaction<Database>, projectId: string, userId: string): Promise<void> {
  const current = await trx.selectFrom('project_members').select('role').where('project_id', '=', projectId).where('user_id', '=', userId).executeTakeFirst();
  if (current?.role !== 'admin') return;
  const admins = await trx.selectFrom('project_members').select(sql<string>`count(*)`.as('n')).where('project_id', '=', projectId).where('role', '=', 'admin').executeTakeFirstOrThrow();
  if (Number(admins.n) <= 1) throw new GraftError('conflict', 'a project must keep at least one admin: promote someone else first');
}
