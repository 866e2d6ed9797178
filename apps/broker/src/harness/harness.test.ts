import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { mapHookEvent } from '@graft/agent';
import { afterEach, describe, expect, it } from 'vitest';
import { CLAUDE_CODE_HOOK_EVENTS, GEMINI_CLI_HOOK_EVENTS, type HarnessLaunchInput, harnessLaunch } from './harness.js';

const run = promisify(execFile);

const base: HarnessLaunchInput = {
  harness: 'command',
  command: null,
  task: null,
  resume: false,
  workspace: '/work/agents/a1',
  agentTool: 'graft-agent',
};
const launch = (over: Partial<HarnessLaunchInput>) => harnessLaunch({ ...base, ...over });

interface HookGroup {
  matcher?: string;
  hooks: Array<{ type: string; command: string }>;
}
const parseHooks = (content: string): Record<string, HookGroup[]> => (JSON.parse(content) as { hooks: Record<string, HookGroup[]> }).hooks;

function onlyFile(l: { files: Array<{ path: string; content: string }> }, path: string): string {
  expect(l.files.map((f) => f.path)).toEqual([path]);
  const f = l.files[0];
  if (f === undefined) throw new Error('no file');
  return f.content;
}

let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

describe('command', () => {
  it('runs the template command as is, with the task in GRAFT_TASK', () => {
    const l = launch({ harness: 'command', command: ['bash', '-c', 'echo "$GRAFT_TASK"'], task: 'fix it' });
    expect(l).toEqual({ command: ['bash', '-c', 'echo "$GRAFT_TASK"'], env: { GRAFT_TASK: 'fix it' }, files: [] });
  });
  it('sets no GRAFT_TASK without a task, and ignores resume', () => {
    expect(launch({ harness: 'command', command: ['sleep', '5'], resume: true })).toEqual({ command: ['sleep', '5'], env: {}, files: [] });
  });
  it('throws without a command', () => {
    expect(() => launch({ harness: 'command', command: null })).toThrow(/harness command needs a command/);
    expect(() => launch({ harness: 'command', command: [] })).toThrow(/harness command needs a command/);
  });
});

describe('script', () => {
  it('runs the script with node, arguments after it', () => {
    const l = launch({ harness: 'script', command: ['agents/bot.mjs', '--fast', 'x y'], task: 'do it' });
    expect(l).toEqual({ command: ['node', 'agents/bot.mjs', '--fast', 'x y'], env: { GRAFT_TASK: 'do it' }, files: [] });
    expect(launch({ harness: 'script', command: ['bot.mjs'], resume: true }).command).toEqual(['node', 'bot.mjs']);
  });
  it('throws without a command', () => {
    expect(() => launch({ harness: 'script', command: null, task: 't' })).toThrow(/harness script needs a command \(the script file/);
    expect(() => launch({ harness: 'script', command: [''] })).toThrow(/harness script needs a command/);
  });
});

describe('claude-code', () => {
  it('runs claude in print mode with streamed JSON, a fresh session', () => {
    const l = launch({ harness: 'claude-code', task: '-v is broken' });
    expect(l.command).toEqual(['claude', '-p', '--output-format', 'stream-json', '--verbose', '--', '-v is broken']);
    expect(l.env).toEqual({ GRAFT_TASK: '-v is broken' });
  });
  it('continues the most recent session of the workspace when resumed', () => {
    const l = launch({ harness: 'claude-code', task: 'go on', resume: true });
    expect(l.command).toEqual(['claude', '-p', '--output-format', 'stream-json', '--verbose', '--continue', '--', 'go on']);
  });
  it('writes .claude/settings.json relaying every mapped hook event to graft-agent', () => {
    const hooks = parseHooks(onlyFile(launch({ harness: 'claude-code', task: 't' }), '.claude/settings.json'));
    expect(Object.keys(hooks).sort()).toEqual(
      ['Notification', 'PostToolUse', 'PreToolUse', 'SessionStart', 'Stop', 'SubagentStop', 'UserPromptSubmit'].sort(),
    );
    expect(hooks['PreToolUse']).toEqual([{ matcher: '*', hooks: [{ type: 'command', command: 'graft-agent hook PreToolUse --harness claude-code' }] }]);
    expect(hooks['PostToolUse']?.[0]?.matcher).toBe('*');
    // Events without tool names take no matcher: all of their occurrences run the hook.
    expect(hooks['Stop']).toEqual([{ hooks: [{ type: 'command', command: 'graft-agent hook Stop --harness claude-code' }] }]);
  });
  it('throws without a task, resumed or not', () => {
    expect(() => launch({ harness: 'claude-code', task: null })).toThrow(/harness claude-code needs a task/);
    expect(() => launch({ harness: 'claude-code', task: '', resume: true })).toThrow(/harness claude-code needs a task/);
  });
});

describe('gemini-cli', () => {
  it('runs gemini headless with the task as its prompt', () => {
    const l = launch({ harness: 'gemini-cli', task: '--help me' });
    expect(l.command).toEqual(['gemini', '--prompt=--help me']);
    expect(l.env).toEqual({ GRAFT_TASK: '--help me' });
  });
  it('resumes the latest session when resumed', () => {
    expect(launch({ harness: 'gemini-cli', task: 'go on', resume: true }).command).toEqual(['gemini', '--resume', 'latest', '--prompt=go on']);
  });
  it('writes .gemini/settings.json relaying every mapped hook event to graft-agent', () => {
    const hooks = parseHooks(onlyFile(launch({ harness: 'gemini-cli', task: 't' }), '.gemini/settings.json'));
    expect(Object.keys(hooks).sort()).toEqual(['AfterAgent', 'AfterTool', 'BeforeAgent', 'BeforeModel', 'BeforeTool', 'Notification', 'SessionStart'].sort());
    expect(hooks['BeforeTool']).toEqual([{ matcher: '*', hooks: [{ type: 'command', command: 'graft-agent hook BeforeTool --harness gemini-cli' }] }]);
    expect(hooks['AfterAgent']).toEqual([{ hooks: [{ type: 'command', command: 'graft-agent hook AfterAgent --harness gemini-cli' }] }]);
  });
  it('throws without a task', () => {
    expect(() => launch({ harness: 'gemini-cli' })).toThrow(/harness gemini-cli needs a task/);
  });
});

describe('codex', () => {
  it('runs codex exec with the task', () => {
    const l = launch({ harness: 'codex', task: 'fix it' });
    expect(l.command).toEqual(['codex', 'exec', '--', 'fix it']);
    expect(l.env).toEqual({ GRAFT_TASK: 'fix it' });
  });
  it('resumes the last session when resumed', () => {
    expect(launch({ harness: 'codex', task: 'go on', resume: true }).command).toEqual(['codex', 'exec', 'resume', '--last', '--', 'go on']);
  });
  it('writes .codex/config.toml with graft-agent as the notify program', () => {
    const content = onlyFile(launch({ harness: 'codex', task: 't' }), '.codex/config.toml');
    expect(content).toBe('notify = ["graft-agent", "hook", "notify", "--harness", "codex"]\n');
  });
  it('escapes the agent tool path as a TOML basic string', () => {
    const content = onlyFile(launch({ harness: 'codex', task: 't', agentTool: 'C:\\a "b"\t\x7f/graft-agent' }), '.codex/config.toml');
    expect(content).toBe('notify = ["C:\\\\a \\"b\\"\\t\\u007f/graft-agent", "hook", "notify", "--harness", "codex"]\n');
  });
  it('throws without a task', () => {
    expect(() => launch({ harness: 'codex', task: null, command: ['codex'] })).toThrow(/harness codex needs a task/);
  });
});

describe('hook configuration and graft-agent agree', () => {
  // hook-mapping.ts does not export its event lists: every configured event must mean something
  // to mapHookEvent, and an event it ignores must not be in the list (that would be a wasted process per event).
  it('configures only Claude Code events that graft-agent maps', () => {
    for (const event of CLAUDE_CODE_HOOK_EVENTS) expect(mapHookEvent('claude-code', event, {}), event).not.toBeNull();
    for (const event of ['SessionEnd', 'PreCompact']) expect(mapHookEvent('claude-code', event, {})).toBeNull();
  });
  it('configures only Gemini CLI events that graft-agent maps', () => {
    for (const event of GEMINI_CLI_HOOK_EVENTS) expect(mapHookEvent('gemini-cli', event, {}), event).not.toBeNull();
    for (const event of ['SessionEnd', 'AfterModel', 'PreCompress']) expect(mapHookEvent('gemini-cli', event, {})).toBeNull();
  });
  it('names the codex notify event graft-agent reads the turn end from', () => {
    expect(mapHookEvent('codex', 'notify', { type: 'agent-turn-complete' })).toEqual({ activity: 'idle' });
  });
});

describe('hook commands survive the shell', () => {
  it('runs the agent tool at a path with spaces and quotes, with the hook arguments intact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'graft-harness-'));
    dirs.push(dir);
    const odd = join(dir, "it's a $dir");
    mkdirSync(odd);
    const tool = join(odd, 'graft-agent');
    writeFileSync(tool, `#!${process.execPath}\nconsole.log(JSON.stringify(process.argv.slice(2)));\n`);
    chmodSync(tool, 0o755);
    for (const harness of ['claude-code', 'gemini-cli'] as const) {
      const content = launch({ harness, task: 't', agentTool: tool }).files[0]?.content ?? '';
      const [group] = Object.values(parseHooks(content))[0] ?? [];
      const command = group?.hooks[0]?.command ?? '';
      const { stdout } = await run('/bin/sh', ['-c', command]);
      expect(JSON.parse(stdout)).toEqual(['hook', harness === 'claude-code' ? 'PreToolUse' : 'BeforeAgent', '--harness', harness]);
    }
  });
});
