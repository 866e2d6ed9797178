import { z } from 'zod';
import { Activity, DesiredState, Phase } from './agent-state.js';
import { Uuid } from './ids.js';

// Live events the hub publishes on its event bus (in-process, or Redis pub/sub across replicas) and
// streams to operators as Server-Sent Events. Best effort and at most once, like the bus: the REST
// resources stay the truth, an event only says "look, this changed".

/** An agent's state as just written (every change goes through the hub's one state writer). */
export const AgentStateEvent = z.strictObject({
  type: z.literal('agent.state'),
  agentId: Uuid,
  projectId: Uuid,
  phase: Phase,
  activity: Activity.nullable(),
  detail: z.string().nullable(),
  desiredState: DesiredState,
  generation: z.number().int().min(1),
  observedGeneration: z.number().int().min(0),
  brokerId: Uuid.nullable(),
  /** When the change was written (ISO 8601). */
  at: z.string(),
});
/** An agent state change. */
export type AgentStateEvent = z.infer<typeof AgentStateEvent>;

/** A broker's tunnel came up on, or went from, a hub replica. */
export const BrokerPresenceEvent = z.strictObject({
  type: z.literal('broker.presence'),
  brokerId: Uuid,
  state: z.enum(['connected', 'disconnected']),
  /** The replica holding (or no longer holding) the tunnel. */
  replicaId: z.string().min(1).max(128),
  at: z.string(),
});
/** A broker presence change. */
export type BrokerPresenceEvent = z.infer<typeof BrokerPresenceEvent>;

/** Every live event. */
export const HubEvent = z.discriminatedUnion('type', [AgentStateEvent, BrokerPresenceEvent]);
/** A live event. */
export type HubEvent = z.infer<typeof HubEvent>;

/** Query of the event streams: `maxSecs` ends the stream after that long (0: at once, after the headers); unset streams until the client goes. */
export const EventStreamQuery = z.strictObject({
  maxSecs: z.coerce.number().int().min(0).max(86_400).optional(),
});
/** Query of the event streams. */
export type EventStreamQuery = z.infer<typeof EventStreamQuery>;
