import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname, relative, resolve } from 'node:path';

/**
 * Turns a template's harness (and the agent's task) into the argv, environment and hook
 * configuration files the broker uses to start an agent. Pure, but for `writeLaunchFiles`.
 */

/** The harnesses an agent template can name. */
export type Harness = 'command' | 'script' | 'claude-code' | 'gemini-cli' | 'codex';

/** What the broker runs to start an agent, and the files it writes into the workspace first. */
export interface HarnessLaunch {
  /** argv: passed to spawn as is, never through a shell. */
  command: string[];
  /** Added to the agent's environment. */
  env: Record<string, string>;
  /** Paths relative to the workspace, written (replacing any file there) before the agent starts. */
  files: Array<{ path: string; content: string; mode?: number }>;
}

/** What `harnessLaunch` needs from the template and the agent. */
export interface HarnessLaunchInput {
  harness: Harness;
  /** The template's command; required by `command` and `script`, ignored by the agent CLIs. */
  command: string[] | null;
  /** The agent's task; required by the agent CLIs, passed in GRAFT_TASK whenever present. */
  task: string | null;
  /** Continue the harness's most recent session in the workspace instead of starting a new one. */
  resume: boolean;
  /** The agent's working directory (the broker starts the process there; argv stays relative to it). */
  workspace: string;
  /** Command name or path of graft-agent, as the harness's hooks should invoke it. */
  agentTool: string;
}

/** Claude Code hook events relayed to graft-agent: exactly the ones its hook mapping reads. */
export const CLAUDE_CODE_HOOK_EVENTS = ['PreToolUse', 'PostToolUse', 'Notification', 'Stop', 'UserPromptSubmit', 'SubagentStop', 'SessionStart'] as const;

/** Gemini CLI hook events relayed to graft-agent: exactly the ones its hook mapping reads. */
export const GEMINI_CLI_HOOK_EVENTS = ['BeforeAgent', 'BeforeModel', 'BeforeTool', 'AfterTool', 'Notification', 'AfterAgent', 'SessionStart'] as const;

/** Events whose matcher filters by tool name; the others run for every occurrence without one. */
const CLAUDE_TOOL_EVENTS: ReadonlySet<string> = new Set(['PreToolUse', 'PostToolUse']);
const GEMINI_TOOL_EVENTS: ReadonlySet<string> = new Set(['BeforeTool', 'AfterTool']);

/** Characters a POSIX shell word may hold unquoted. */
const SHELL_SAFE = /^[A-Za-z0-9_./:@%+=,-]+$/;

/** Hook commands in Claude Code and Gemini CLI settings are shell command lines: the tool path must survive the shell. */
const shellWord = (s: string): string => (SHELL_SAFE.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`);

/**
 * A TOML basic string. JSON's escapes (\" \\ \b \f \n \r \t \uXXXX) are all valid TOML; TOML
 * additionally forbids a raw DEL, which JSON leaves as is.
 */
const tomlString = (s: string): string => JSON.stringify(s).replaceAll('\x7f', '\\u007f');

function requireTask(harness: Harness, task: string | null): string {
  if (task === null || task === '') throw new Error(`harness ${harness} needs a task (it is the prompt the agent starts with); none was given`);
  return task;
}

function requireCommand(harness: Harness, command: string[] | null, what: string): [string, ...string[]] {
  const [first, ...rest] = command ?? [];
  if (first === undefined || first === '') throw new Error(`harness ${harness} needs a command (${what}); none was given`);
  return [first, ...rest];
}

function hookSettings(agentTool: string, harness: 'claude-code' | 'gemini-cli', events: readonly string[], toolEvents: ReadonlySet<string>): string {
  const hooks: Record<string, unknown[]> = {};
  for (const event of events) {
    const hook = { type: 'command', command: `${shellWord(agentTool)} hook ${event} --harness ${harness}` };
    hooks[event] = [toolEvents.has(event) ? { matcher: '*', hooks: [hook] } : { hooks: [hook] }];
  }
  return `${JSON.stringify({ hooks }, null, 2)}\n`;
}

/** The argv, environment and hook files that start an agent of the given harness. Throws when the harness lacks the command or task it needs. */
export function harnessLaunch(input: HarnessLaunchInput): HarnessLaunch {
  const { harness, task, resume, agentTool } = input;
  const env: Record<string, string> = task === null ? {} : { GRAFT_TASK: task };
  switch (harness) {
    case 'command':
      return { command: requireCommand(harness, input.command, 'the program to run and its arguments'), env, files: [] };
    case 'script': {
      const [script, ...rest] = requireCommand(harness, input.command, 'the script file to run with node, and its arguments');
      return { command: ['node', script, ...rest], env, files: [] };
    }
    case 'claude-code': {
      const prompt = requireTask(harness, task);
      // `--continue` picks the most recent session of this directory: the broker keeps no session ids,
      // and each agent has a workspace of its own. `--` keeps a task that starts with '-' a prompt.
      return {
        command: ['claude', '-p', '--output-format', 'stream-json', '--verbose', ...(resume ? ['--continue'] : []), '--', prompt],
        env,
        files: [{ path: '.claude/settings.json', content: hookSettings(agentTool, harness, CLAUDE_CODE_HOOK_EVENTS, CLAUDE_TOOL_EVENTS) }],
      };
    }
    case 'gemini-cli': {
      const prompt = requireTask(harness, task);
      // `--prompt=` (not `-p <task>`) so a task that starts with '-' is not read as a flag.
      return {
        command: ['gemini', ...(resume ? ['--resume', 'latest'] : []), `--prompt=${prompt}`],
        env,
        files: [{ path: '.gemini/settings.json', content: hookSettings(agentTool, harness, GEMINI_CLI_HOOK_EVENTS, GEMINI_TOOL_EVENTS) }],
      };
    }
    case 'codex': {
      const prompt = requireTask(harness, task);
      // codex appends the notification JSON as the last argument: graft-agent reads it as the payload.
      const notify = [agentTool, 'hook', 'notify', '--harness', 'codex'].map(tomlString).join(', ');
      return {
        command: ['codex', 'exec', ...(resume ? ['resume', '--last'] : []), '--', prompt],
        env,
        files: [{ path: '.codex/config.toml', content: `notify = [${notify}]\n` }],
      };
    }
  }
}

/** Writes a launch's files into the workspace (replacing what is there); a path leading out of it is refused. */
export async function writeLaunchFiles(workspace: string, files: HarnessLaunch['files']): Promise<void> {
  const root = resolve(workspace);
  for (const file of files) {
    const target = resolve(root, file.path);
    if (relative(root, target).startsWith('..')) throw new Error(`harness file ${file.path} lies outside the workspace`);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, file.content, { mode: file.mode ?? 0o644 });
    if (file.mode !== undefined) await chmod(target, file.mode);
  }
}
