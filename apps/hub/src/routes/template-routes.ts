import type { Database } from '@graft/db';
import {
  CreateTemplateRequest,
  CreateTemplateVersionRequest,
  GraftError,
  IdParams,
  ListTemplatesQuery,
  PageQuery,
  pageOf,
  Template,
  type TemplateSpec,
  TemplateVersion,
  TemplateVersionParams,
} from '@graft/protocol';
import { type Kysely, type Selectable, sql } from 'kysely';
import type { TemplatesTable } from '@graft/db';
import type { Principal } from '../auth/principal.js';
import { asUser, requireAdmin, requireProjectRole } from '../domain/access.js';
import { contentHash } from '../domain/content-hash.js';
import { decodeCursor, isUuidKey, toPage } from '../domain/cursor.js';
import { toTemplateVersion } from '../domain/mappers.js';
import { isUniqueViolation } from '../domain/pg-errors.js';
import { uuidv7 } from '../domain/uuid.js';
import type { HubContext } from '../hub-context.js';
import { route, type RouteSpec } from '../http/route.js';

/** The stored spec of a request body; `runtime`/`network` given both at the top and under `requirements` must agree. */
function specOf(body: TemplateSpec): TemplateSpec {
  const { harness, runtime, network, image, command, env, resources, requirements } = body;
  for (const key of ['runtime', 'network'] as const) {
    const top = body[key];
    const nested = requirements?.[key];
    if (top !== undefined && nested !== undefined && top !== nested) {
      throw new GraftError('validation_error', `invalid body: ${key} and requirements.${key} disagree (${JSON.stringify(top)} vs ${JSON.stringify(nested)}); give it once`, {
        issues: [{ path: `body.${key}`, message: `disagrees with requirements.${key}`, code: 'custom' }],
      });
    }
  }
  return { harness, runtime, network, image, command, env, resources, requirements };
}

/** Checks the caller may read (`viewer`) or change (`member`) a template; global ones are read by all, changed by admins. */
async function requireTemplateAccess(db: Kysely<Database>, principal: Principal, t: Selectable<TemplatesTable>, write: boolean): Promise<void> {
  if (t.project_id === null) {
    if (write) requireAdmin(principal);
    else asUser(principal);
    return;
  }
  await requireProjectRole(db, principal, t.project_id, write ? 'member' : 'viewer');
}

/** Templates and their immutable versions. */
export function templateRoutes(ctx: HubContext): RouteSpec[] {
  const { db } = ctx;

  const loadTemplate = async (principal: Principal, id: string, write: boolean) => {
    const t = await db.selectFrom('templates').selectAll().where('id', '=', id).executeTakeFirst();
    if (!t) throw new GraftError('not_found', 'template not found');
    try {
      await requireTemplateAccess(db, principal, t, write);
    } catch (err) {
      // A template in a project the caller cannot see does not exist for them.
      if (err instanceof GraftError && err.code === 'not_found') throw new GraftError('not_found', 'template not found');
      throw err;
    }
    return t;
  };

  const withLatest = async (t: Selectable<TemplatesTable>) => {
    const v = await db.selectFrom('template_versions').selectAll().where('template_id', '=', t.id).where('version', '=', t.latest_version).executeTakeFirstOrThrow();
    return {
      id: t.id,
      name: t.name,
      projectId: t.project_id,
      latestVersion: t.latest_version,
      createdAt: t.created_at.toISOString(),
      updatedAt: t.updated_at.toISOString(),
      latest: toTemplateVersion(v),
    };
  };

  return [
    route({
      method: 'get',
      path: '/api/v1/templates',
      summary: 'List templates: global ones and those of projects the caller may see (?projectId= narrows)',
      tag: 'templates',
      auth: 'user',
      query: PageQuery.extend(ListTemplatesQuery.shape),
      responses: { 200: pageOf(Template) },
      handler: async ({ query, principal }) => {
        const user = asUser(principal);
        if (query.projectId) await requireProjectRole(db, principal, query.projectId, 'viewer');
        const after = decodeCursor(query.cursor, isUuidKey);
        let q = db
          .selectFrom('templates as t')
          .innerJoin('template_versions as v', (j) => j.onRef('v.template_id', '=', 't.id').onRef('v.version', '=', 't.latest_version'))
          .selectAll('t')
          .select(['v.spec', 'v.content_hash', 'v.created_at as v_created_at', 'v.created_by as v_created_by']);
        if (query.projectId) q = q.where('t.project_id', '=', query.projectId);
        else if (!user.isAdmin) {
          q = q.where((eb) =>
            eb.or([eb('t.project_id', 'is', null), eb('t.project_id', 'in', eb.selectFrom('project_members').select('project_id').where('user_id', '=', user.userId))]),
          );
        }
        if (after) q = q.where('t.id', '>', after);
        const rows = await q.orderBy('t.id').limit(query.limit + 1).execute();
        return {
          status: 200,
          body: toPage(rows, query.limit, (r) => r.id, (r) => ({
            id: r.id,
            name: r.name,
            projectId: r.project_id,
            latestVersion: r.latest_version,
            createdAt: r.created_at.toISOString(),
            updatedAt: r.updated_at.toISOString(),
            latest: toTemplateVersion({ template_id: r.id, version: r.latest_version, spec: r.spec, content_hash: r.content_hash, created_at: r.v_created_at, created_by: r.v_created_by }),
          })),
        };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/templates',
      summary: 'Create a template and its version 1 (project member; global templates need a platform admin)',
      tag: 'templates',
      auth: 'user',
      body: CreateTemplateRequest,
      responses: { 201: Template },
      handler: async ({ body, principal }) => {
        const user = asUser(principal);
        if (body.projectId) await requireProjectRole(db, principal, body.projectId, 'member');
        else requireAdmin(principal);
        const spec = specOf(body);
        const id = uuidv7();
        try {
          await db.transaction().execute(async (trx) => {
            await trx.insertInto('templates').values({ id, name: body.name, project_id: body.projectId ?? null, latest_version: 1, created_by: user.userId }).execute();
            await trx
              .insertInto('template_versions')
              .values({ template_id: id, version: 1, spec: JSON.stringify(spec), content_hash: contentHash(spec), created_by: user.userId })
              .execute();
          });
        } catch (err) {
          if (isUniqueViolation(err)) throw new GraftError('conflict', `a template named ${body.name} already exists ${body.projectId ? 'in this project' : 'globally'}`);
          throw err;
        }
        const t = await db.selectFrom('templates').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
        ctx.log.info('template.created', { templateId: id, projectId: body.projectId ?? null });
        return { status: 201, body: await withLatest(t) };
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/templates/:id',
      summary: 'A template with its latest version',
      tag: 'templates',
      auth: 'user',
      params: IdParams,
      responses: { 200: Template },
      handler: async ({ params, principal }) => ({ status: 200, body: await withLatest(await loadTemplate(principal, params.id, false)) }),
    }),
    route({
      method: 'post',
      path: '/api/v1/templates/:id/versions',
      summary: 'Add an immutable version (201); content identical to the latest returns that version (200)',
      tag: 'templates',
      auth: 'user',
      params: IdParams,
      body: CreateTemplateVersionRequest,
      responses: { 201: TemplateVersion, 200: TemplateVersion },
      handler: async ({ params, body, principal }) => {
        const user = asUser(principal);
        await loadTemplate(principal, params.id, true);
        const spec = specOf(body);
        const hash = contentHash(spec);
        const result = await db.transaction().execute(async (trx) => {
          const t = await trx.selectFrom('templates').select('latest_version').where('id', '=', params.id).forUpdate().executeTakeFirstOrThrow();
          const latest = await trx.selectFrom('template_versions').selectAll().where('template_id', '=', params.id).where('version', '=', t.latest_version).executeTakeFirstOrThrow();
          if (latest.content_hash === hash) return { row: latest, created: false };
          const version = t.latest_version + 1;
          const row = await trx
            .insertInto('template_versions')
            .values({ template_id: params.id, version, spec: JSON.stringify(spec), content_hash: hash, created_by: user.userId })
            .returningAll()
            .executeTakeFirstOrThrow();
          await trx.updateTable('templates').set({ latest_version: version, updated_at: sql`now()` }).where('id', '=', params.id).execute();
          return { row, created: true };
        });
        return { status: result.created ? 201 : 200, body: toTemplateVersion(result.row) };
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/templates/:id/versions/:n',
      summary: 'One version of a template',
      tag: 'templates',
      auth: 'user',
      params: TemplateVersionParams,
      responses: { 200: TemplateVersion },
      handler: async ({ params, principal }) => {
        await loadTemplate(principal, params.id, false);
        const v = await db.selectFrom('template_versions').selectAll().where('template_id', '=', params.id).where('version', '=', params.n).executeTakeFirst();
        if (!v) throw new GraftError('not_found', `template has no version ${params.n}`);
        return { status: 200, body: toTemplateVersion(v) };
      },
    }),
  ];
}
