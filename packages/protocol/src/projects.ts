import { z } from 'zod';
import { Labels, ResourceName, Uuid } from './ids.js';

/** A member's role in a project; each includes the rights of the ones before it. */
export const ProjectRole = z.enum(['viewer', 'member', 'admin']);
/** A member's role in a project. */
export type ProjectRole = z.infer<typeof ProjectRole>;

/** A git remote as typed by a person: URL, scp-like, or a local path. */
export const GitRemote = z.string().trim().min(1).max(2048);

/** `POST /projects/register` body. */
export const RegisterProjectRequest = z.strictObject({
  name: ResourceName,
  gitRemote: GitRemote.optional(),
  labels: Labels.optional(),
});
/** `POST /projects/register` body. */
export type RegisterProjectRequest = z.infer<typeof RegisterProjectRequest>;

/** `PATCH /projects/:id` body. */
export const UpdateProjectRequest = z
  .strictObject({
    name: ResourceName.optional(),
    labels: Labels.optional(),
    /** Suspend agents of this project when they stall (they resume on a message with wake, or a start). */
    autoSuspendStalled: z.boolean().optional(),
    /** Days an agent's log is kept after its last write. */
    logRetentionDays: z.number().int().min(1).max(3650).optional(),
  })
  .refine(
    (b) => b.name !== undefined || b.labels !== undefined || b.autoSuspendStalled !== undefined || b.logRetentionDays !== undefined,
    'nothing to update: give name, labels, autoSuspendStalled or logRetentionDays',
  );
/** `PATCH /projects/:id` body. */
export type UpdateProjectRequest = z.infer<typeof UpdateProjectRequest>;

/** A project. */
export const Project = z.object({
  id: Uuid,
  name: z.string(),
  gitRemote: z.string().nullable().describe('normalised remote: the project identity'),
  cloneUrl: z.string().nullable().describe('the remote as registered; agents clone it into their workspace'),
  autoSuspendStalled: z.boolean().describe('stalled agents are suspended'),
  logRetentionDays: z.number().int().describe("days an agent's log is kept after its last write"),
  labels: z.record(z.string(), z.string()),
  createdBy: Uuid.nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  role: ProjectRole.nullable().describe('the caller\'s role; null for platform admins who are not members'),
});
/** A project. */
export type Project = z.infer<typeof Project>;

/** `GET /projects/:id`: the project plus statistics. */
export const ProjectDetail = Project.extend({
  stats: z.object({
    agentsByPhase: z.record(z.string(), z.number().int()),
    agentsTotal: z.number().int(),
    lastActivityAt: z.string().nullable(),
  }),
});
/** `GET /projects/:id` response. */
export type ProjectDetail = z.infer<typeof ProjectDetail>;

/** `POST /projects/register` response. */
export const RegisterProjectResponse = z.object({ project: Project, created: z.boolean() });
/** `POST /projects/register` response. */
export type RegisterProjectResponse = z.infer<typeof RegisterProjectResponse>;

/** A project member. */
export const ProjectMember = z.object({ userId: Uuid, email: z.string(), role: ProjectRole, createdAt: z.string() });
/** A project member. */
export type ProjectMember = z.infer<typeof ProjectMember>;

/** `PUT /projects/:id/members/:userId` body. */
export const PutMemberRequest = z.strictObject({ role: ProjectRole });
/** `PUT /projects/:id/members/:userId` body. */
export type PutMemberRequest = z.infer<typeof PutMemberRequest>;

/** Route params `:id/members/:userId`. */
export const MemberParams = z.object({ id: Uuid, userId: Uuid });
/** Route params `:id/members/:userId`. */
export type MemberParams = z.infer<typeof MemberParams>;

/** A secret's name: usable as an environment variable. */
export const SecretName = z.string().min(1).max(128).regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a valid environment variable name');

/** Route params `:id/secrets/:name`. */
export const SecretParams = z.object({ id: Uuid, name: SecretName });
/** Route params `:id/secrets/:name`. */
export type SecretParams = z.infer<typeof SecretParams>;

/** `PUT /projects/:id/secrets/:name` body. */
export const PutSecretRequest = z.strictObject({ value: z.string().min(1).max(65536) });
/** `PUT /projects/:id/secrets/:name` body. */
export type PutSecretRequest = z.infer<typeof PutSecretRequest>;

/** A secret's metadata; the value is never returned. */
export const SecretMeta = z.object({ name: z.string(), version: z.number().int(), createdAt: z.string(), updatedAt: z.string(), updatedBy: Uuid.nullable() });
/** A secret's metadata. */
export type SecretMeta = z.infer<typeof SecretMeta>;
