import { describe, expect, it } from 'vitest';
import { type AgentStateView, applyStatus, canTransition, decideAction, Phase } from './agent-state.js';

const agent = (over: Partial<AgentStateView> = {}): AgentStateView => ({ phase: 'running', activity: 'working', detail: null, desiredState: 'running', ...over });

describe('canTransition', () => {
  it('accepts the startup path and every phase to itself', () => {
    const path = ['created', 'provisioning', 'cloning', 'starting', 'running', 'stopping', 'stopped'] as const;
    for (let i = 1; i < path.length; i++) expect(canTransition(path[i - 1] ?? 'created', path[i] ?? 'created')).toBe(true);
    for (const p of Phase.options) expect(canTransition(p, p)).toBe(true);
  });

  it('rejects skipping straight to running and leaving stopped for anything but a new start', () => {
    expect(canTransition('created', 'running')).toBe(false);
    expect(canTransition('provisioning', 'running')).toBe(false);
    expect(canTransition('stopped', 'running')).toBe(false);
    expect(canTransition('stopped', 'suspended')).toBe(false);
    expect(canTransition('stopped', 'provisioning')).toBe(true);
  });
});

describe('decideAction', () => {
  it('suspends only a running or starting agent whose desired state is running', () => {
    expect(decideAction(agent(), 'suspend')).toEqual({ ok: true, desiredState: 'suspended', bumpGeneration: true, resume: false });
    expect(decideAction(agent({ phase: 'created', activity: null }), 'suspend').ok).toBe(false);
    expect(decideAction(agent({ desiredState: 'suspended' }), 'suspend').ok).toBe(false);
    expect(decideAction(agent({ phase: 'stopped', activity: null }), 'suspend').ok).toBe(false);
  });

  it('start resumes a suspended agent and starts a stopped or errored one fresh', () => {
    expect(decideAction(agent({ phase: 'suspended', activity: null, desiredState: 'suspended' }), 'start')).toMatchObject({ ok: true, resume: true });
    expect(decideAction(agent({ phase: 'stopped', activity: null, desiredState: 'stopped' }), 'start')).toMatchObject({ ok: true, resume: false });
    expect(decideAction(agent({ phase: 'error', activity: null }), 'start')).toMatchObject({ ok: true, resume: false });
    const already = decideAction(agent(), 'start');
    expect(already.ok).toBe(false);
    if (!already.ok) expect(already.message).toContain('already running');
  });

  it('restart is refused while the agent is still coming up, and everything but delete once deleting', () => {
    expect(decideAction(agent({ phase: 'provisioning', activity: null }), 'restart').ok).toBe(false);
    expect(decideAction(agent(), 'restart')).toMatchObject({ ok: true, desiredState: 'running', bumpGeneration: true });
    for (const a of ['start', 'stop', 'suspend', 'restart'] as const) expect(decideAction(agent({ desiredState: 'deleted' }), a).ok).toBe(false);
    expect(decideAction(agent({ desiredState: 'deleted' }), 'delete')).toMatchObject({ ok: true, bumpGeneration: false });
  });

  it('stop is refused when already stopped or in error', () => {
    expect(decideAction(agent({ phase: 'stopped', activity: null }), 'stop').ok).toBe(false);
    expect(decideAction(agent({ phase: 'error', activity: null }), 'stop').ok).toBe(false);
    expect(decideAction(agent({ phase: 'created', activity: null }), 'stop')).toMatchObject({ ok: true, desiredState: 'stopped' });
  });
});

describe('applyStatus', () => {
  it('entering running defaults the activity to idle; leaving it clears the activity', () => {
    expect(applyStatus(agent({ phase: 'starting', activity: null }), { phase: 'running' }, 'agent')).toMatchObject({ ok: true, phase: 'running', activity: 'idle' });
    expect(applyStatus(agent(), { phase: 'stopped' }, 'agent')).toMatchObject({ ok: true, phase: 'stopped', activity: null });
  });

  it('refuses illegal phases, activities outside running and platform-only activities from agents', () => {
    expect(applyStatus(agent({ phase: 'provisioning', activity: null }), { phase: 'running' }, 'agent')).toMatchObject({ ok: false, reason: 'illegal_phase' });
    expect(applyStatus(agent({ phase: 'starting', activity: null }), { activity: 'thinking' }, 'agent')).toMatchObject({ ok: false, reason: 'activity_not_running' });
    expect(applyStatus(agent(), { activity: 'stalled' }, 'agent')).toMatchObject({ ok: false, reason: 'platform_only' });
    expect(applyStatus(agent(), { activity: 'offline' }, 'hook')).toMatchObject({ ok: false, reason: 'platform_only' });
    expect(applyStatus(agent(), { activity: 'stalled' }, 'platform')).toMatchObject({ ok: true, activity: 'stalled' });
  });

  it('hook events do not overwrite sticky activities, but the agent itself may', () => {
    for (const sticky of ['waiting_for_input', 'blocked', 'completed', 'limits_exceeded'] as const) {
      const cur = agent({ activity: sticky, detail: 'question?' });
      const hook = applyStatus(cur, { activity: 'working', detail: 'Edit' }, 'hook');
      expect(hook).toMatchObject({ ok: true, activity: sticky, detail: 'question?', activityChanged: false, ignored: ['activity', 'detail'] });
      expect(applyStatus(cur, { activity: 'working' }, 'agent')).toMatchObject({ ok: true, activity: 'working', activityChanged: true, ignored: [] });
    }
  });

  it('hook events do overwrite non-sticky and platform-set activities', () => {
    expect(applyStatus(agent({ activity: 'thinking' }), { activity: 'executing' }, 'hook')).toMatchObject({ ok: true, activity: 'executing' });
    expect(applyStatus(agent({ activity: 'stalled' }), { activity: 'working' }, 'hook')).toMatchObject({ ok: true, activity: 'working' });
  });

  it('a detail-only report keeps the activity and may clear the detail with null', () => {
    expect(applyStatus(agent({ detail: 'x' }), { detail: 'y' }, 'agent')).toMatchObject({ ok: true, activity: 'working', detail: 'y', activityChanged: false });
    expect(applyStatus(agent({ detail: 'x' }), { detail: null }, 'agent')).toMatchObject({ ok: true, detail: null });
  });
});
