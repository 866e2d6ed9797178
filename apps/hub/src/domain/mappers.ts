import { type RawBuilder, type Selectable, sql } from 'kysely';
import type { ApiKeysTable, ProjectsTable, TemplateVersionsTable, UsersTable } from '@graft/db';
import type { ApiKey, ApiKeyScope, Project, ProjectRole, TemplateSpec, TemplateVersion, User } from '@graft/protocol';

const iso = (d: Date): string => d.toISOString();
const isoOrNull = (d: Date | null): string | null => (d ? d.toISOString() : null);

/** Row → API user. */
export function toUser(r: Selectable<UsersTable>): User {
  return { id: r.id, email: r.email, name: r.name, isAdmin: r.is_admin, createdAt: iso(r.created_at) };
}

/** Row → API key listing (never the token or its hash). */
export function toApiKey(r: Selectable<ApiKeysTable>): ApiKey {
  return {
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    scopes: r.scopes as ApiKeyScope[],
    expiresAt: isoOrNull(r.expires_at),
    lastUsedAt: isoOrNull(r.last_used_at),
    revokedAt: isoOrNull(r.revoked_at),
    createdAt: iso(r.created_at),
  };
}

/** Row → API project, with the caller's role. */
export function toProject(r: Selectable<ProjectsTable>, role: ProjectRole | null): Project {
  return {
    id: r.id,
    name: r.name,
    gitRemote: r.git_remote,
    cloneUrl: r.clone_url,
    autoSuspendStalled: r.auto_suspend_stalled,
    logRetentionDays: r.log_retention_days,
    labels: r.labels,
    createdBy: r.created_by,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
    role,
  };
}

/** Row → API template version. */
export function toTemplateVersion(r: Selectable<TemplateVersionsTable>): TemplateVersion {
  return {
    ...(r.spec as unknown as TemplateSpec),
    templateId: r.template_id,
    version: r.version,
    contentHash: r.content_hash,
    createdAt: iso(r.created_at),
    createdBy: r.created_by,
  };
}

/** ISO-8601 UTC with milliseconds, as `Date.prototype.toISOString` writes it (truncated, not rounded). */
const isoSql = (column: string): RawBuilder<string | null> =>
  sql`to_char(date_trunc('milliseconds', ${sql.ref(column)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * The API agent object (protocol `Agent`), built by Postgres as JSON text: the one definition of
 * how an agent row is shown. The hub then skips parsing 18 columns per row, two Date round trips
 * and JSON.stringify, which were most of a list request's CPU. `alias` is the agents table's
 * alias; `env` is never shown (it may carry credentials). Tests validate it against `Agent`.
 */
export function agentJsonSql(alias: string): RawBuilder<string> {
  const c = (name: string) => sql.ref(`${alias}.${name}`);
  return sql<string>`json_build_object(
    'id', ${c('id')}, 'name', ${c('name')}, 'projectId', ${c('project_id')}, 'templateId', ${c('template_id')},
    'templateVersion', ${c('template_version')}, 'phase', ${c('phase')}, 'activity', ${c('activity')}, 'priorActivity', ${c('prior_activity')}, 'detail', ${c('detail')},
    'desiredState', ${c('desired_state')}, 'generation', ${c('generation')}, 'brokerId', ${c('broker_id')},
    'pendingReason', ${c('pending_reason')}, 'task', ${c('task')}, 'labels', ${c('labels')}, 'createdBy', ${c('created_by')},
    'createdAt', ${isoSql(`${alias}.created_at`)}, 'updatedAt', ${isoSql(`${alias}.updated_at`)}, 'lastSeenAt', ${isoSql(`${alias}.last_seen_at`)}
  )::text`;
}
