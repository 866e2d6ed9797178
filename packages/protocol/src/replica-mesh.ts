import { z } from 'zod';
import { Uuid } from './ids.js';
import { CommandName, DesiredAgent, ResultMessage } from './tunnel.js';

// Messages between hub replicas (cluster mode), carried by the tunnel mesh (Redis pub/sub): a command
// or attach stream for a broker whose tunnel another replica holds is forwarded to that replica, and
// its answers come back. JSON text frames; terminal bytes travel as binary terminal frames
// (`encodeTerminalFrame`), never base64 in JSON. A JSON frame always starts with `{`.

/** A hub replica's id (random per process start). */
export const ReplicaId = z.string().min(1).max(128);

/** Sends a command to the broker whose tunnel the receiving replica holds; answered by `command_result`. */
export const MeshCommand = z.strictObject({
  type: z.literal('command'),
  id: z.string().min(1).max(64),
  from: ReplicaId,
  brokerId: Uuid,
  command: CommandName,
  agent: DesiredAgent,
  message: z.string().optional(),
});
/** A forwarded command. */
export type MeshCommand = z.infer<typeof MeshCommand>;

/** The broker's answer to a forwarded command; null when the receiving replica no longer holds the tunnel or the broker did not answer in time. */
export const MeshCommandResult = z.strictObject({
  type: z.literal('command_result'),
  id: z.string().min(1).max(64),
  result: ResultMessage.nullable(),
});
/** The answer to a forwarded command. */
export type MeshCommandResult = z.infer<typeof MeshCommandResult>;

/** The broker was deleted: the replica holding its tunnel closes it. */
export const MeshRevoke = z.strictObject({ type: z.literal('revoke'), brokerId: Uuid });
/** A forwarded revocation. */
export type MeshRevoke = z.infer<typeof MeshRevoke>;

/** Opens a terminal on the broker for a viewer connected to the sending replica. */
export const MeshAttachOpen = z.strictObject({
  type: z.literal('attach_open'),
  from: ReplicaId,
  streamId: Uuid,
  brokerId: Uuid,
  agentId: Uuid,
  cols: z.number().int().min(1).max(1000),
  rows: z.number().int().min(1).max(1000),
});
/** A forwarded attach request. */
export type MeshAttachOpen = z.infer<typeof MeshAttachOpen>;

/** The broker opened the terminal of a forwarded attach stream. */
export const MeshAttachOpened = z.strictObject({ type: z.literal('attach_opened'), streamId: Uuid });
/** A forwarded `attach_opened`. */
export type MeshAttachOpened = z.infer<typeof MeshAttachOpened>;

/** The viewer's terminal size changed. */
export const MeshAttachResize = z.strictObject({
  type: z.literal('attach_resize'),
  streamId: Uuid,
  cols: z.number().int().min(1).max(1000),
  rows: z.number().int().min(1).max(1000),
});
/** A forwarded resize. */
export type MeshAttachResize = z.infer<typeof MeshAttachResize>;

/** Either end is done with the stream (viewer gone, terminal ended, tunnel closed); the reason is for the viewer. */
export const MeshAttachClose = z.strictObject({ type: z.literal('attach_close'), streamId: Uuid, reason: z.string().max(256) });
/** A forwarded end of stream. */
export type MeshAttachClose = z.infer<typeof MeshAttachClose>;

/** Keeps forwarded streams alive: each end closes a stream it has not heard of for a while (its peer replica died). */
export const MeshAttachPing = z.strictObject({ type: z.literal('attach_ping'), from: ReplicaId, streamIds: z.array(Uuid).max(10_000) });
/** A keepalive for forwarded streams. */
export type MeshAttachPing = z.infer<typeof MeshAttachPing>;

/** Every JSON message between replicas. */
export const MeshMessage = z.discriminatedUnion('type', [MeshCommand, MeshCommandResult, MeshRevoke, MeshAttachOpen, MeshAttachOpened, MeshAttachResize, MeshAttachClose, MeshAttachPing]);
/** A message between replicas. */
export type MeshMessage = z.infer<typeof MeshMessage>;
