import { z } from 'zod';
import { Labels, ResourceName, Uuid } from './ids.js';

/** A way a broker can run agents. */
export const BrokerRuntime = z.enum(['process', 'docker', 'bwrap']);
/** A way a broker can run agents. */
export type BrokerRuntime = z.infer<typeof BrokerRuntime>;

/** `POST /brokers/register` body (phase 1, operator). */
export const RegisterBrokerRequest = z.strictObject({
  name: ResourceName,
  labels: Labels.optional(),
  projectIds: z.array(Uuid).max(1000).optional(),
  autoProvide: z.boolean().optional().describe('run agents of any project, not only linked ones'),
});
/** `POST /brokers/register` body. */
export type RegisterBrokerRequest = z.infer<typeof RegisterBrokerRequest>;

/** `POST /brokers/register` response: the join token is shown only here. */
export const RegisterBrokerResponse = z.object({ brokerId: Uuid, joinToken: z.string(), expiresAt: z.string() });
/** `POST /brokers/register` response. */
export type RegisterBrokerResponse = z.infer<typeof RegisterBrokerResponse>;

/** `POST /brokers/join` body (phase 2, on the node). */
export const JoinBrokerRequest = z.strictObject({
  brokerId: Uuid,
  joinToken: z.string().min(1).max(200),
  hostname: z.string().trim().min(1).max(255),
  version: z.string().trim().min(1).max(64),
  runtimes: z.array(BrokerRuntime).min(1).max(3),
  capacity: z.strictObject({ maxAgents: z.number().int().min(1).max(100_000) }),
});
/** `POST /brokers/join` body. */
export type JoinBrokerRequest = z.infer<typeof JoinBrokerRequest>;

/** `POST /brokers/join` response: the broker's secret, shown only here. */
export const JoinBrokerResponse = z.object({ brokerId: Uuid, secretKey: z.string(), hubUrl: z.string() });
/** `POST /brokers/join` response. */
export type JoinBrokerResponse = z.infer<typeof JoinBrokerResponse>;

/** Whether a broker can take agents now. */
export const BrokerStatus = z.enum(['online', 'offline', 'draining']);
/** Whether a broker can take agents now. */
export type BrokerStatus = z.infer<typeof BrokerStatus>;

/** A broker as the API shows it (never its join token or secret). */
export const Broker = z.object({
  id: Uuid,
  name: z.string(),
  labels: z.record(z.string(), z.string()),
  projectIds: z.array(Uuid),
  autoProvide: z.boolean(),
  status: BrokerStatus,
  joined: z.boolean(),
  joinExpiresAt: z.string().nullable(),
  hostname: z.string().nullable(),
  version: z.string().nullable(),
  runtimes: z.array(BrokerRuntime),
  capacity: z.object({ maxAgents: z.number().int().nullable() }),
  load: z.object({ runningAgents: z.number().int() }),
  draining: z.boolean(),
  lastHeartbeatAt: z.string().nullable(),
  createdAt: z.string(),
});
/** A broker as the API shows it. */
export type Broker = z.infer<typeof Broker>;

/** `POST /brokers/:id/rotate-secret` response: the new secret, shown only here. */
export const RotatedBrokerSecret = z.object({ brokerId: Uuid, secretKey: z.string(), previousValidUntil: z.string() });
/** `POST /brokers/:id/rotate-secret` response. */
export type RotatedBrokerSecret = z.infer<typeof RotatedBrokerSecret>;

/** Route params `/projects/:id/brokers/:brokerId`. */
export const ProjectBrokerParams = z.object({ id: Uuid, brokerId: Uuid });
/** Route params `/projects/:id/brokers/:brokerId`. */
export type ProjectBrokerParams = z.infer<typeof ProjectBrokerParams>;
