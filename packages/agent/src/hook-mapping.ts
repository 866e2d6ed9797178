import type { Activity } from '@graft/protocol';

/** Harnesses whose hook events graft-agent understands. */
export const HOOK_HARNESSES = ['claude-code', 'gemini-cli', 'codex'] as const;
/** A harness whose hook events graft-agent understands. */
export type HookHarness = (typeof HOOK_HARNESSES)[number];

/** What a hook event means for the agent's status; null when the event carries no status. */
export interface HookStatus {
  activity?: Activity;
  detail?: string;
}

/** The hub's limit on `detail`. */
const MAX_DETAIL = 4096;

/** A string field of the payload, if present and non-empty, cut to what the hub accepts. */
function field(payload: unknown, name: string): string | undefined {
  if (typeof payload !== 'object' || payload === null) return undefined;
  const v = (payload as Record<string, unknown>)[name];
  return typeof v === 'string' && v !== '' ? v.slice(0, MAX_DETAIL) : undefined;
}

const withDetail = (activity: Activity, detail: string | undefined): HookStatus => (detail === undefined ? { activity } : { activity, detail });

/** Claude Code hooks (https://docs.anthropic.com/en/docs/claude-code/hooks): event name as in settings.json. */
function claudeCode(event: string, payload: unknown): HookStatus | null {
  switch (event) {
    case 'UserPromptSubmit':
      return { activity: 'working' };
    case 'PreToolUse':
      return withDetail('executing', field(payload, 'tool_name'));
    case 'PostToolUse':
    case 'SubagentStop':
      return { activity: 'thinking' };
    case 'Notification':
      return withDetail('waiting_for_input', field(payload, 'message'));
    case 'Stop':
    case 'SessionStart':
      return { activity: 'idle' };
    default:
      return null;
  }
}

/**
 * Gemini CLI hooks (https://geminicli.com/docs/hooks/reference): the same JSON-on-stdin design as
 * Claude Code with its own event names; `tool_name` and `message` carry the same meaning.
 */
function geminiCli(event: string, payload: unknown): HookStatus | null {
  switch (event) {
    case 'BeforeAgent':
      return { activity: 'working' };
    case 'BeforeModel':
      return { activity: 'thinking' };
    case 'BeforeTool':
      return withDetail('executing', field(payload, 'tool_name'));
    case 'AfterTool':
      return { activity: 'thinking' };
    case 'Notification':
      return withDetail('waiting_for_input', field(payload, 'message'));
    case 'AfterAgent':
    case 'SessionStart':
      return { activity: 'idle' };
    default:
      return null;
  }
}

/**
 * Codex has no per-tool hooks; its `notify` program is called with a JSON argument whose `type`
 * is `agent-turn-complete` when a turn ends (the turn's last message is its detail). The event
 * may be given as `notify` (the type is then read from the payload) or as the type itself.
 */
function codex(event: string, payload: unknown): HookStatus | null {
  const type = event === 'notify' ? field(payload, 'type') : event;
  if (type === 'agent-turn-complete') return withDetail('idle', field(payload, 'last-assistant-message'));
  return null;
}

/** Maps a harness hook event and its payload to an activity (and detail); null for events that mean nothing here. */
export function mapHookEvent(harness: HookHarness, event: string, payload: unknown): HookStatus | null {
  switch (harness) {
    case 'claude-code':
      return claudeCode(event, payload);
    case 'gemini-cli':
      return geminiCli(event, payload);
    case 'codex':
      return codex(event, payload);
  }
}

/** Whether a string names a supported harness. */
export function isHookHarness(name: string): name is HookHarness {
  return (HOOK_HARNESSES as readonly string[]).includes(name);
}
