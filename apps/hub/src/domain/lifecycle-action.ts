import { canTransition, decideAction, GraftError, type LifecycleAction } from '@graft/protocol';
import type { AgentStateWriter } from './agent-writer.js';

/**
 * Records a lifecycle action on an agent's desired state (DESIGN §3) through the writer: the new
 * desired state, a new generation when it changes, and the resume flag. Throws `invalid_transition`
 * when the action does not apply to the agent's state. The caller pushes the command to the broker.
 */
export function applyLifecycleAction(writer: AgentStateWriter, agentId: string, action: Exclude<LifecycleAction, 'delete'>): Promise<void> {
  return writer.update(agentId, (cur) => {
    const out = decideAction(cur, action);
    if (!out.ok) throw new GraftError('invalid_transition', out.message, { phase: cur.phase, desiredState: cur.desiredState, action });
    // No broker owns an unplaced agent, so the hub itself observes it stopping.
    const unplaced = cur.brokerId === null;
    const stopNow = action === 'stop' && unplaced && canTransition(cur.phase, 'stopped');
    return {
      set: {
        desired_state: out.desiredState,
        generation: out.bumpGeneration ? cur.generation + 1 : cur.generation,
        resume: out.resume,
        ...(stopNow ? { phase: 'stopped', activity: null } : {}),
        // An unplaced agent waits for a broker exactly while it is wanted running.
        ...(unplaced ? { pending_reason: out.desiredState === 'running' ? 'no_broker' : null } : {}),
      },
      result: () => undefined,
    };
  });
}
