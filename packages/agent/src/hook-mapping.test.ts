import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isHookHarness, mapHookEvent } from './hook-mapping.js';

const fixture = (name: string): Record<string, unknown> => JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', name), 'utf8')) as Record<string, unknown>;

describe('claude-code hook mapping', () => {
  const events = fixture('claude-code-hooks.json');
  it.each([
    ['SessionStart', { activity: 'idle' }],
    ['UserPromptSubmit', { activity: 'working' }],
    ['PreToolUse', { activity: 'executing', detail: 'Bash' }],
    ['PostToolUse', { activity: 'thinking' }],
    ['Notification', { activity: 'waiting_for_input', detail: 'Claude needs your permission to use Bash' }],
    ['SubagentStop', { activity: 'thinking' }],
    ['Stop', { activity: 'idle' }],
  ])('%s', (event, expected) => {
    expect(events[event]).toBeDefined();
    expect(mapHookEvent('claude-code', event, events[event])).toEqual(expected);
  });

  it('ignores events that carry no status, and tolerates payloads without the fields', () => {
    expect(mapHookEvent('claude-code', 'PreCompact', events.PreCompact)).toBeNull();
    expect(mapHookEvent('claude-code', 'NoSuchEvent', {})).toBeNull();
    expect(mapHookEvent('claude-code', 'PreToolUse', {})).toEqual({ activity: 'executing' });
    expect(mapHookEvent('claude-code', 'Notification', 'not an object')).toEqual({ activity: 'waiting_for_input' });
  });

  it('cuts a long detail to what the hub accepts', () => {
    const r = mapHookEvent('claude-code', 'Notification', { message: 'x'.repeat(10_000) });
    expect(r?.detail).toHaveLength(4096);
  });
});

describe('gemini-cli hook mapping', () => {
  const events = fixture('gemini-cli-hooks.json');
  it.each([
    ['SessionStart', { activity: 'idle' }],
    ['BeforeAgent', { activity: 'working' }],
    ['BeforeModel', { activity: 'thinking' }],
    ['BeforeTool', { activity: 'executing', detail: 'run_shell_command' }],
    ['AfterTool', { activity: 'thinking' }],
    ['Notification', { activity: 'waiting_for_input', detail: 'Allow run_shell_command: rm -rf build?' }],
    ['AfterAgent', { activity: 'idle' }],
    ['SessionEnd', null],
  ])('%s', (event, expected) => {
    expect(events[event]).toBeDefined();
    expect(mapHookEvent('gemini-cli', event, events[event])).toEqual(expected);
  });

  it('does not understand claude-code event names', () => {
    expect(mapHookEvent('gemini-cli', 'PreToolUse', { tool_name: 'Bash' })).toBeNull();
  });
});

describe('codex notify mapping', () => {
  const payload = fixture('codex-notify.json');
  it('maps a finished turn to idle with its last message, by `notify` or by the type itself', () => {
    const expected = { activity: 'idle', detail: 'Rename complete and verified with cargo build.' };
    expect(mapHookEvent('codex', 'notify', payload)).toEqual(expected);
    expect(mapHookEvent('codex', 'agent-turn-complete', payload)).toEqual(expected);
  });
  it('ignores other notification types', () => {
    expect(mapHookEvent('codex', 'notify', { type: 'something-new' })).toBeNull();
  });
});

it('knows which harnesses it supports', () => {
  expect(['claude-code', 'gemini-cli', 'codex'].every(isHookHarness)).toBe(true);
  expect(isHookHarness('command')).toBe(false);
});
