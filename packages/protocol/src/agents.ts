import { z } from 'zod';
import { Activity, DesiredState, PendingReason, Phase } from './agent-state.js';
import { EnvVars, Labels, ResourceName, Uuid } from './ids.js';

/** A template reference: its id or name, optionally pinned to a version (`name@3`). */
export const TemplateRef = z.string().min(1).max(200).regex(/^[A-Za-z0-9][A-Za-z0-9-]*(@[1-9][0-9]*)?$/, 'must be a template id or name, optionally @version');

/** `POST /agents` body. */
export const CreateAgentRequest = z.strictObject({
  projectId: Uuid,
  name: ResourceName,
  template: TemplateRef,
  task: z.string().max(100_000).optional(),
  env: EnvVars.optional(),
  brokerId: Uuid.optional(),
  labels: Labels.optional(),
});
/** `POST /agents` body. */
export type CreateAgentRequest = z.infer<typeof CreateAgentRequest>;

/** An agent as the API returns it. */
export const Agent = z.object({
  id: Uuid,
  name: z.string(),
  projectId: Uuid,
  templateId: Uuid,
  templateVersion: z.number().int(),
  phase: Phase,
  activity: Activity.nullable(),
  /** While the platform has set `offline` or `stalled`: the activity the agent had before, restored when it is back. */
  priorActivity: Activity.nullable(),
  detail: z.string().nullable(),
  desiredState: DesiredState,
  generation: z.number().int(),
  brokerId: Uuid.nullable(),
  pendingReason: PendingReason.nullable(),
  task: z.string().nullable(),
  labels: z.record(z.string(), z.string()),
  createdBy: Uuid.nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  lastSeenAt: z.string().nullable(),
});
/** An agent as the API returns it. */
export type Agent = z.infer<typeof Agent>;

/** `GET /agents` filters. */
export const ListAgentsQuery = z.object({
  projectId: Uuid.optional(),
  userId: Uuid.optional(),
  phase: Phase.optional(),
  brokerId: Uuid.optional(),
});
/** `GET /agents` filters. */
export type ListAgentsQuery = z.infer<typeof ListAgentsQuery>;

/** `POST /agents/:id/status` body (agent tokens only). */
export const AgentStatusRequest = z
  .strictObject({
    phase: Phase.optional(),
    activity: Activity.optional(),
    detail: z.string().max(4096).nullable().optional(),
    source: z.enum(['agent', 'hook']).default('agent').describe('hook events cannot overwrite sticky activities'),
  })
  .refine((b) => b.phase !== undefined || b.activity !== undefined || b.detail !== undefined, 'give at least one of phase, activity, detail');
/** `POST /agents/:id/status` body. */
export type AgentStatusRequest = z.infer<typeof AgentStatusRequest>;

/** `POST /agents/:id/status` response. */
export const AgentStatusResponse = z.object({
  phase: Phase,
  activity: Activity.nullable(),
  detail: z.string().nullable(),
  generation: z.number().int(),
  desiredState: DesiredState,
  ignored: z.array(z.enum(['activity', 'detail'])),
});
/** `POST /agents/:id/status` response. */
export type AgentStatusResponse = z.infer<typeof AgentStatusResponse>;

/** `POST /agents/:id/heartbeat` response: what the agent should know about its own state. */
export const AgentHeartbeatResponse = z.object({
  phase: Phase,
  activity: Activity.nullable(),
  desiredState: DesiredState,
  generation: z.number().int(),
});
/** `POST /agents/:id/heartbeat` response. */
export type AgentHeartbeatResponse = z.infer<typeof AgentHeartbeatResponse>;

/** `POST /agents/:id/token` and `/token/refresh` response. */
export const AgentToken = z.object({ token: z.string(), expiresAt: z.string(), agentId: Uuid });
/** An agent's short-lived JWT. */
export type AgentToken = z.infer<typeof AgentToken>;

/** `DELETE /agents/:id` response when removal waits for a broker. */
export const DeleteAgentResponse = z.object({ deleted: z.boolean(), agent: Agent.nullable() });
/** `DELETE /agents/:id` response. */
export type DeleteAgentResponse = z.infer<typeof DeleteAgentResponse>;

/** `POST /agents/:id/messages` body. */
export const SendMessageRequest = z.strictObject({
  body: z.string().min(1).max(100_000),
  wake: z.boolean().optional().describe('resume a suspended agent first'),
  interrupt: z.boolean().optional().describe('ask the harness to interrupt its current step (delivered as a flag; harnesses act on it)'),
});
/** `POST /agents/:id/messages` body. */
export type SendMessageRequest = z.infer<typeof SendMessageRequest>;

/** Whether a message reached the agent's node. */
export const MessageState = z.enum(['pending', 'delivered']);
/** Whether a message reached the agent's node. */
export type MessageState = z.infer<typeof MessageState>;

/** A message to an agent, with its delivery state. */
export const AgentMessage = z.object({
  id: Uuid,
  agentId: Uuid,
  body: z.string(),
  wake: z.boolean(),
  interrupt: z.boolean(),
  state: MessageState,
  attempts: z.number().int(),
  createdBy: Uuid.nullable(),
  createdAt: z.string(),
  deliveredAt: z.string().nullable(),
});
/** A message to an agent, with its delivery state. */
export type AgentMessage = z.infer<typeof AgentMessage>;
