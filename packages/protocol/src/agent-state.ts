import { z } from 'zod';

/** Lifecycle phase of an agent as observed on its node. */
export const Phase = z.enum([
  'created',
  'provisioning',
  'cloning',
  'starting',
  'running',
  'stopping',
  'stopped',
  'suspended',
  'error',
]);
/** Lifecycle phase of an agent. */
export type Phase = z.infer<typeof Phase>;

/** What a running agent is doing. */
export const Activity = z.enum([
  'idle',
  'working',
  'thinking',
  'executing',
  'waiting_for_input',
  'blocked',
  'completed',
  'limits_exceeded',
  'stalled',
  'offline',
]);
/** What a running agent is doing. */
export type Activity = z.infer<typeof Activity>;

/** The operator's wish for an agent; brokers converge the observed phase towards it. */
export const DesiredState = z.enum(['running', 'suspended', 'stopped', 'deleted']);
/** The operator's wish for an agent. */
export type DesiredState = z.infer<typeof DesiredState>;

/** Why an agent is still waiting for a broker. */
export const PendingReason = z.enum(['no_broker', 'no_capacity', 'draining', 'not_allowed', 'no_runtime', 'no_isolation', 'no_limits', 'no_labels']);
/** Why an agent is still waiting for a broker. */
export type PendingReason = z.infer<typeof PendingReason>;

/** Activities that hook events must not overwrite: the agent is waiting on something outside itself. */
export const STICKY_ACTIVITIES: ReadonlySet<Activity> = new Set(['waiting_for_input', 'blocked', 'completed', 'limits_exceeded']);

/** Activities only the platform may set (liveness sweeps), never an agent. */
export const PLATFORM_ACTIVITIES: ReadonlySet<Activity> = new Set(['stalled', 'offline']);

/** Who reported a status change; decides which rules apply. */
export type StatusSource = 'agent' | 'hook' | 'broker' | 'platform';

/** Observed-phase transitions. A report of the current phase is always accepted (idempotent). */
const PHASE_TRANSITIONS: Readonly<Record<Phase, readonly Phase[]>> = {
  created: ['provisioning', 'stopped', 'error'],
  provisioning: ['cloning', 'starting', 'stopping', 'stopped', 'error'],
  cloning: ['starting', 'stopping', 'stopped', 'error'],
  starting: ['running', 'stopping', 'stopped', 'suspended', 'error'],
  running: ['stopping', 'stopped', 'suspended', 'error'],
  stopping: ['stopped', 'suspended', 'error'],
  suspended: ['provisioning', 'starting', 'stopping', 'stopped', 'error'],
  stopped: ['provisioning', 'starting'],
  error: ['provisioning', 'starting', 'stopped'],
};

/** Phases in which an agent holds resources on a node (or is about to). */
export const ACTIVE_PHASES: ReadonlySet<Phase> = new Set([
  'created',
  'provisioning',
  'cloning',
  'starting',
  'running',
  'stopping',
  'suspended',
]);

/** Operator lifecycle actions. */
export const LifecycleAction = z.enum(['start', 'stop', 'suspend', 'restart', 'delete']);
/** Operator lifecycle actions. */
export type LifecycleAction = z.infer<typeof LifecycleAction>;

/** The part of an agent the state machine reads. */
export interface AgentStateView {
  phase: Phase;
  activity: Activity | null;
  detail: string | null;
  desiredState: DesiredState;
}

/** A rejected transition: the caller maps it to `invalid_transition` (or `forbidden`). */
export interface TransitionRejection {
  ok: false;
  reason: 'illegal_phase' | 'illegal_action' | 'activity_not_running' | 'platform_only';
  message: string;
}

/** The outcome of an accepted operator action. */
export interface ActionOutcome {
  ok: true;
  desiredState: DesiredState;
  /** Whether the generation must increase (every real change of intent does). */
  bumpGeneration: boolean;
  /** Start of a suspended agent resumes its session; everything else starts fresh. */
  resume: boolean;
}

/** Whether an observed phase may follow another. */
export function canTransition(from: Phase, to: Phase): boolean {
  return from === to || PHASE_TRANSITIONS[from].includes(to);
}

/** Decides whether an operator action is legal now and what it changes. */
export function decideAction(agent: AgentStateView, action: LifecycleAction): ActionOutcome | TransitionRejection {
  const { phase, desiredState } = agent;
  const reject = (message: string): TransitionRejection => ({ ok: false, reason: 'illegal_action', message });
  if (desiredState === 'deleted' && action !== 'delete') return reject('agent is being deleted');
  switch (action) {
    case 'suspend':
      if (desiredState !== 'running' || !['provisioning', 'cloning', 'starting', 'running'].includes(phase)) {
        return reject(`cannot suspend an agent in phase ${phase} (desired ${desiredState})`);
      }
      return { ok: true, desiredState: 'suspended', bumpGeneration: true, resume: false };
    case 'start':
      if (phase === 'suspended' || phase === 'stopped' || phase === 'error' || desiredState !== 'running') {
        return { ok: true, desiredState: 'running', bumpGeneration: true, resume: phase === 'suspended' };
      }
      return reject(`agent is already ${phase === 'running' ? 'running' : `starting (phase ${phase})`}`);
    case 'stop':
      if (phase === 'stopped' || phase === 'error' || desiredState === 'stopped') {
        return reject(`agent is already ${phase === 'error' ? 'in error' : 'stopped'}`);
      }
      return { ok: true, desiredState: 'stopped', bumpGeneration: true, resume: false };
    case 'restart':
      if (phase === 'created' || phase === 'provisioning' || phase === 'cloning' || phase === 'stopping') {
        return reject(`cannot restart an agent in phase ${phase}`);
      }
      return { ok: true, desiredState: 'running', bumpGeneration: true, resume: false };
    case 'delete':
      return { ok: true, desiredState: 'deleted', bumpGeneration: desiredState !== 'deleted', resume: false };
  }
}

/** A status report: any subset of phase, activity and detail. */
export interface StatusReport {
  phase?: Phase | undefined;
  activity?: Activity | undefined;
  detail?: string | null | undefined;
}

/** The state after applying a report, plus which fields were ignored by the sticky rule. */
export interface StatusOutcome {
  ok: true;
  phase: Phase;
  activity: Activity | null;
  detail: string | null;
  activityChanged: boolean;
  ignored: Array<'activity' | 'detail'>;
}

/**
 * Applies a status report under the rules of DESIGN §3: legal phase transitions, activity only
 * while running, platform-only activities, and sticky activities that hook events cannot overwrite.
 */
export function applyStatus(
  agent: AgentStateView,
  report: StatusReport,
  source: StatusSource,
): StatusOutcome | TransitionRejection {
  const nextPhase = report.phase ?? agent.phase;
  if (!canTransition(agent.phase, nextPhase)) {
    return { ok: false, reason: 'illegal_phase', message: `phase ${agent.phase} cannot change to ${nextPhase}` };
  }
  if (report.activity !== undefined && PLATFORM_ACTIVITIES.has(report.activity) && source !== 'platform') {
    return { ok: false, reason: 'platform_only', message: `activity ${report.activity} is set by the platform only` };
  }
  if (report.activity !== undefined && nextPhase !== 'running') {
    return { ok: false, reason: 'activity_not_running', message: `activity applies only while running (phase ${nextPhase})` };
  }
  const ignored: Array<'activity' | 'detail'> = [];
  let activity: Activity | null;
  let detail = report.detail === undefined ? agent.detail : report.detail;
  if (nextPhase !== 'running') {
    activity = null;
  } else if (agent.phase !== 'running') {
    activity = report.activity ?? 'idle';
  } else if (report.activity === undefined) {
    activity = agent.activity;
  } else if (source === 'hook' && agent.activity !== null && STICKY_ACTIVITIES.has(agent.activity) && report.activity !== agent.activity) {
    activity = agent.activity;
    ignored.push('activity');
    if (report.detail !== undefined) {
      detail = agent.detail;
      ignored.push('detail');
    }
  } else {
    activity = report.activity;
  }
  return { ok: true, phase: nextPhase, activity, detail, activityChanged: activity !== agent.activity, ignored };
}
