import type { Database } from '@graft/db';
import { GraftError, type ProjectRole } from '@graft/protocol';
import type { Kysely } from 'kysely';
import type { Principal, UserPrincipal } from '../auth/principal.js';

const RANK: Record<ProjectRole, number> = { viewer: 1, member: 2, admin: 3 };

/** Whether `role` grants at least `min`. */
export function hasRole(role: ProjectRole | null, min: ProjectRole): boolean {
  return role !== null && RANK[role] >= RANK[min];
}

/** The caller as a user, or `forbidden` for agents. */
export function asUser(principal: Principal): UserPrincipal {
  if (principal.kind === 'user') return principal;
  if (principal.kind === 'agent') throw new GraftError('forbidden', 'agent tokens may only act on their own agent');
  if (principal.kind === 'broker') throw new GraftError('forbidden', 'brokers may only call broker endpoints');
  throw new GraftError('unauthorized', 'authentication required');
}

/** Requires a platform admin. */
export function requireAdmin(principal: Principal): UserPrincipal {
  const user = asUser(principal);
  if (!user.isAdmin) throw new GraftError('forbidden', 'requires a platform admin');
  return user;
}

/** The caller's role in a project (null: not a member); `not_found` when the project does not exist. */
export async function projectRole(db: Kysely<Database>, user: UserPrincipal, projectId: string): Promise<ProjectRole | null> {
  const row = await db
    .selectFrom('projects as p')
    .leftJoin('project_members as m', (j) => j.onRef('m.project_id', '=', 'p.id').on('m.user_id', '=', user.userId))
    .select(['p.id', 'm.role'])
    .where('p.id', '=', projectId)
    .executeTakeFirst();
  if (!row) throw new GraftError('not_found', 'project not found');
  return row.role ?? null;
}

/**
 * Requires at least `min` in a project. Platform admins pass. Non-members get `not_found` so
 * project ids do not leak; members with too small a role get `forbidden` with what they lack.
 */
export async function requireProjectRole(db: Kysely<Database>, principal: Principal, projectId: string, min: ProjectRole): Promise<ProjectRole | null> {
  const user = asUser(principal);
  const role = await projectRole(db, user, projectId);
  if (user.isAdmin) return role;
  if (role === null) throw new GraftError('not_found', 'project not found');
  if (!hasRole(role, min)) throw new GraftError('forbidden', `requires role ${min} in this project (you are ${role})`, { required: min, role });
  return role;
}
