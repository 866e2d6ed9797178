import type { AgentStateEvent, BrokerPresenceEvent } from '@graft/protocol';
import type { AgentStateRow } from '../domain/agent-writer.js';
import type { EventBus } from './event-bus.js';

/** Topic of a project's agent state changes (each message one `AgentStateEvent`, JSON). */
export const projectEventsTopic = (projectId: string): string => `events:project:${projectId}`;
/** Topic of broker presence changes (each message one `BrokerPresenceEvent`, JSON). */
export const BROKER_EVENTS_TOPIC = 'events:brokers';

/** Publishes a written agent state change to its project's readers, on every replica. */
export function publishAgentState(bus: EventBus, row: AgentStateRow): void {
  const event: AgentStateEvent = {
    type: 'agent.state',
    agentId: row.id,
    projectId: row.projectId,
    phase: row.phase,
    activity: row.activity,
    detail: row.detail,
    desiredState: row.desiredState,
    generation: row.generation,
    observedGeneration: row.observedGeneration,
    brokerId: row.brokerId,
    at: new Date().toISOString(),
  };
  bus.publish(projectEventsTopic(row.projectId), Buffer.from(JSON.stringify(event)));
}

/** Publishes that a broker's tunnel came up on, or went from, this replica. */
export function publishBrokerPresence(bus: EventBus, brokerId: string, state: BrokerPresenceEvent['state'], replicaId: string): void {
  const event: BrokerPresenceEvent = { type: 'broker.presence', brokerId, state, replicaId, at: new Date().toISOString() };
  bus.publish(BROKER_EVENTS_TOPIC, Buffer.from(JSON.stringify(event)));
}
