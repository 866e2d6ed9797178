import { z } from 'zod';
import { BrokerRuntime } from './brokers.js';
import { EnvVars, ResourceName, Uuid } from './ids.js';

/** How an agent's tool is started and how its hooks map to activity. */
export const Harness = z.enum(['command', 'script', 'claude-code', 'gemini-cli', 'codex']);
/** How an agent's tool is started. */
export type Harness = z.infer<typeof Harness>;

/** Resource limits a template asks for. */
export const Resources = z.strictObject({
  memoryMb: z.number().int().min(16).max(1048576).optional(),
  cpus: z.number().min(0.01).max(1024).optional(),
});
/** Resource limits a template asks for. */
export type Resources = z.infer<typeof Resources>;

/** What a broker must offer to run this template. */
export const Requirements = z.strictObject({
  /** Same as the template's top-level `runtime` (kept for templates written before it). */
  runtime: BrokerRuntime.optional(),
  labels: z.record(z.string().min(1).max(63), z.string().max(255)).optional(),
  /** Same as the template's top-level `network` (kept for templates written before it). */
  network: z.boolean().optional(),
});
/** What a broker must offer to run this template. */
export type Requirements = z.infer<typeof Requirements>;

/** The content of one template version. */
export const TemplateSpec = z.strictObject({
  harness: Harness,
  /** The runtime to run in; without it `docker` when `image` is set, else whatever the broker offers. */
  runtime: BrokerRuntime.optional(),
  /** Whether the agent may reach the network (default true); without it the agent still reaches the hub through its broker. */
  network: z.boolean().optional(),
  image: z.string().min(1).max(512).optional(),
  command: z.array(z.string().max(4096)).min(1).max(256).optional(),
  env: EnvVars.optional(),
  resources: Resources.optional(),
  requirements: Requirements.optional(),
});
/** The content of one template version. */
export type TemplateSpec = z.infer<typeof TemplateSpec>;

/** `POST /templates` body: creates version 1. */
export const CreateTemplateRequest = TemplateSpec.extend({ name: ResourceName, projectId: Uuid.optional() });
/** `POST /templates` body. */
export type CreateTemplateRequest = z.infer<typeof CreateTemplateRequest>;

/** `POST /templates/:id/versions` body: a new immutable version. */
export const CreateTemplateVersionRequest = TemplateSpec;
/** `POST /templates/:id/versions` body. */
export type CreateTemplateVersionRequest = z.infer<typeof CreateTemplateVersionRequest>;

/** One immutable template version. */
export const TemplateVersion = TemplateSpec.extend({
  templateId: Uuid,
  version: z.number().int(),
  contentHash: z.string(),
  createdAt: z.string(),
  createdBy: Uuid.nullable(),
});
/** One immutable template version. */
export type TemplateVersion = z.infer<typeof TemplateVersion>;

/** A template with its latest version inline. */
export const Template = z.object({
  id: Uuid,
  name: z.string(),
  projectId: Uuid.nullable(),
  latestVersion: z.number().int(),
  createdAt: z.string(),
  updatedAt: z.string(),
  latest: TemplateVersion,
});
/** A template with its latest version inline. */
export type Template = z.infer<typeof Template>;

/** `GET /templates` filters. */
export const ListTemplatesQuery = z.object({ projectId: Uuid.optional() });
/** `GET /templates` filters. */
export type ListTemplatesQuery = z.infer<typeof ListTemplatesQuery>;

/** Route params `:id/versions/:n`. */
export const TemplateVersionParams = z.object({ id: Uuid, n: z.coerce.number().int().min(1).max(1_000_000) });
/** Route params `:id/versions/:n`. */
export type TemplateVersionParams = z.infer<typeof TemplateVersionParams>;
