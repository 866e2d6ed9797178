import { once, setMaxListeners } from 'node:events';
import { type AgentLogQuery, GraftApiError, type GraftClient } from '@graft/client';
import type { Agent, Phase } from '@graft/protocol';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type CliContext, withConnectionOptions } from '../context.js';
import { UsageError } from '../errors.js';
import type { Io } from '../output/io.js';
import { isUuid, resolveProjectId } from '../resolve/project-ref.js';

/** How often `graft logs --project P -f` lists the project's agents again, to pick up new ones. */
const RELIST_MS = 2_000;
/** A partial line longer than this is printed without waiting for its newline (a progress bar, a binary blob). */
const MAX_PARTIAL_LINE = 64 * 1024;
/** Phases after which an agent's log does not grow until someone starts it again (as the hub decides when a follow ends). */
const FINISHED: ReadonlySet<Phase> = new Set(['stopped', 'error', 'suspended']);
/** ANSI colours of the name prefixes, as `docker compose logs` uses them: cyan, yellow, green, magenta, blue and their bright variants. */
const PREFIX_COLOURS = ['36', '33', '32', '35', '34', '96', '93', '92', '95', '94'] as const;

interface LogsFlags {
  follow?: boolean;
  since?: number;
  tail?: number;
  stream?: 'stdout' | 'stderr';
  project?: string;
}

/** Where log output goes, with back-pressure: a write resolves once the stream can take more. */
export interface LogOutput {
  write(data: string | Uint8Array): Promise<void>;
}

/** A {@link LogOutput} on a writable stream (process.stdout). */
export function streamOutput(stream: NodeJS.WritableStream): LogOutput {
  return {
    write: async (data) => {
      if (!stream.write(data)) await once(stream, 'drain');
    },
  };
}

/** Whether prefixes get colours: only on a terminal, and never when NO_COLOR is set to something (no-color.org). */
export function useColour(isTty: boolean, noColor: string | undefined): boolean {
  return isTty && (noColor === undefined || noColor === '');
}

/** The colour of an agent's prefix: derived from its name, so it is the same in every run. */
export function prefixColour(name: string): string {
  // FNV-1a: cheap and spreads similar names (a1, a2) over different colours.
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return PREFIX_COLOURS[hash % PREFIX_COLOURS.length] ?? '36';
}

/** One output line of `--project`: `name  | line`, the name padded to `width`, coloured when `colour`. */
export function formatPrefixedLine(name: string, line: string, options: { width: number; colour: boolean }): string {
  const label = `${name.padEnd(options.width)} |`;
  return options.colour ? `\u001b[${prefixColour(name)}m${label}\u001b[0m ${line}\n` : `${label} ${line}\n`;
}

/** Cuts text arriving in pieces into lines; the part after the last newline waits for the next piece. */
export class LineSplitter {
  private rest = '';

  /** The lines completed by `text`, without their newlines. */
  push(text: string): string[] {
    const parts = (this.rest + text).split('\n');
    this.rest = parts.pop() ?? '';
    if (this.rest.length > MAX_PARTIAL_LINE) {
      parts.push(this.rest);
      this.rest = '';
    }
    return parts;
  }

  /** The unfinished last line, if any (the log ended without a newline). */
  flush(): string | undefined {
    const rest = this.rest;
    this.rest = '';
    return rest === '' ? undefined : rest;
  }
}

/** Writes several agents' output as prefixed lines, each agent's streams buffered apart until their newlines. */
export class PrefixedPrinter {
  private width = 0;
  private readonly partial = new Map<string, { agentId: string; name: string; lines: LineSplitter }>();

  constructor(
    private readonly out: LogOutput,
    private readonly colour: boolean,
  ) {}

  /** Pads the prefixes to the longest of these names (and of those seen before). */
  widen(names: readonly string[]): void {
    for (const n of names) this.width = Math.max(this.width, n.length);
  }

  /** Prints the lines `text` completes for this agent's stream. */
  async write(agentId: string, name: string, stream: string, text: string): Promise<void> {
    const key = `${agentId}\u0000${stream}`;
    let entry = this.partial.get(key);
    if (!entry) {
      entry = { agentId, name, lines: new LineSplitter() };
      this.partial.set(key, entry);
    }
    const lines = entry.lines.push(text);
    if (lines.length > 0) await this.out.write(lines.map((l) => this.format(name, l)).join(''));
  }

  /** Prints what an agent left unfinished (its log ended, or the command stops), newline added. */
  async flush(agentId?: string): Promise<void> {
    for (const [key, entry] of this.partial) {
      if (agentId !== undefined && entry.agentId !== agentId) continue;
      this.partial.delete(key);
      const rest = entry.lines.flush();
      if (rest !== undefined) await this.out.write(this.format(entry.name, rest));
    }
  }

  private format(name: string, line: string): string {
    return formatPrefixedLine(name, line, { width: this.width, colour: this.colour });
  }
}

/** Parses `--tail`: a count of lines, as the hub accepts it. */
function parseTail(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 1_000_000) throw new InvalidArgumentError('must be an integer from 0 to 1000000');
  return n;
}

/** Parses `--since`: a chunk sequence number. */
function parseSeq(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('must be a sequence number (an integer from 0)');
  return n;
}

/** Aborts on the first Ctrl-C or SIGTERM; a second one kills as usual. */
function interruptible(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  // One listener per followed agent sits on this signal (through the client's requests).
  setMaxListeners(0, controller.signal);
  const stop = () => {
    dispose();
    controller.abort();
  };
  const dispose = () => {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return { signal: controller.signal, dispose };
}

const isTransient = (err: unknown): boolean => err instanceof GraftApiError && (err.status === 0 || err.status === 429 || err.status >= 500);

/** Every agent of a project, oldest first (so `--project` without -f prints them in creation order). */
async function listProjectAgents(client: GraftClient, projectId: string): Promise<Agent[]> {
  const all: Agent[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.listAgents({ projectId, limit: 500, ...(cursor ? { cursor } : {}) });
    all.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return all.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name));
}

/** `graft logs ID`: the log as it is now, streamed through. */
async function printOne(client: GraftClient, agentId: string, query: AgentLogQuery, out: LogOutput): Promise<void> {
  for await (const bytes of client.agentLogText(agentId, query)) await out.write(bytes);
}

/** `graft logs ID -f`: until the agent's run is over or Ctrl-C; one note on stderr per lost connection. */
async function followOne(client: GraftClient, agentId: string, query: AgentLogQuery, out: LogOutput, io: Io, signal: AbortSignal): Promise<void> {
  let reported = false;
  for await (const event of client.followAgentLogs(agentId, { ...query, signal })) {
    if (event.type === 'chunk') {
      reported = false;
      await out.write(event.chunk.data);
    } else if (!reported) {
      reported = true;
      io.err(`graft: ${event.error.message}; reconnecting`);
    }
  }
}

/** `graft logs --project P`: each agent's log in turn, prefixed. */
async function printProject(client: GraftClient, projectId: string, query: AgentLogQuery, printer: PrefixedPrinter): Promise<void> {
  const agents = await listProjectAgents(client, projectId);
  printer.widen(agents.map((a) => a.name));
  for (const agent of agents) {
    const decoder = new TextDecoder();
    try {
      for await (const bytes of client.agentLogText(agent.id, query)) await printer.write(agent.id, agent.name, 'text', decoder.decode(bytes, { stream: true }));
    } catch (err) {
      // Deleted since the listing (and its log gone with retention): nothing to show.
      if (!(err instanceof GraftApiError && err.code === 'not_found')) throw err;
    }
    await printer.write(agent.id, agent.name, 'text', decoder.decode());
    await printer.flush(agent.id);
  }
}

/**
 * `graft logs --project P -f`: follows every agent, re-listing the project every few seconds to
 * pick up new agents (followed from their first line) and restarted ones (from where their log
 * stopped). Runs until Ctrl-C or an error no retry would fix.
 */
async function followProject(client: GraftClient, projectId: string, flags: LogsFlags, printer: PrefixedPrinter, io: Io, outer: AbortSignal): Promise<void> {
  const stop = new AbortController();
  setMaxListeners(0, stop.signal);
  const onOuter = () => stop.abort();
  outer.addEventListener('abort', onOuter, { once: true });
  if (outer.aborted) stop.abort();
  let failure: unknown;
  const fail = (err: unknown) => {
    failure ??= err;
    stop.abort();
  };
  const followed = new Map<string, { live: boolean; lastSeq: number | undefined }>();
  const tasks = new Set<Promise<void>>();

  const follow = (agent: Agent, query: AgentLogQuery) => {
    const state = followed.get(agent.id) ?? { live: true, lastSeq: undefined };
    state.live = true;
    followed.set(agent.id, state);
    const run = async () => {
      let reported = false;
      try {
        for await (const event of client.followAgentLogs(agent.id, { ...query, signal: stop.signal })) {
          if (event.type === 'chunk') {
            reported = false;
            state.lastSeq = event.chunk.seq;
            await printer.write(agent.id, agent.name, event.chunk.stream, event.chunk.data);
          } else if (!reported) {
            reported = true;
            io.err(`graft: ${agent.name}: ${event.error.message}; reconnecting`);
          }
        }
      } catch (err) {
        if (err instanceof GraftApiError && err.code === 'not_found') io.err(`graft: ${agent.name}: ${err.message}`);
        else fail(err);
      } finally {
        await printer.flush(agent.id);
        state.live = false;
      }
    };
    const task = run();
    tasks.add(task);
    const forget = () => tasks.delete(task);
    void task.then(forget, forget);
  };

  let first = true;
  let reported = false;
  while (!stop.signal.aborted) {
    try {
      const agents = await listProjectAgents(client, projectId);
      reported = false;
      printer.widen(agents.map((a) => a.name));
      for (const agent of agents) {
        const state = followed.get(agent.id);
        // --tail is for the output that is there when the command starts; a new agent is shown whole.
        if (state === undefined) follow(agent, { ...(first && flags.tail !== undefined ? { tail: flags.tail } : {}), stream: flags.stream });
        else if (!state.live && !FINISHED.has(agent.phase)) follow(agent, { since: state.lastSeq ?? 0, stream: flags.stream });
      }
      first = false;
    } catch (err) {
      if (!isTransient(err)) {
        fail(err);
        break;
      }
      if (!reported) io.err(`graft: ${(err as Error).message}; retrying`);
      reported = true;
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(done, RELIST_MS);
      stop.signal.addEventListener('abort', done, { once: true });
    });
  }
  await Promise.allSettled([...tasks]);
  await printer.flush();
  outer.removeEventListener('abort', onOuter);
  if (failure !== undefined) throw failure;
}

/** `graft logs <agent> | --project P [-f] [--since SEQ] [--tail N] [--stream stdout|stderr]`. */
export function registerLogsCommand(program: Command, ctx: CliContext): void {
  withConnectionOptions(program.command('logs'))
    .description("Print an agent's output, or follow it live; or the output of every agent of a project, each line prefixed with the agent's name")
    .argument('[agent]', 'agent id')
    .option('-f, --follow', 'keep printing new output until the agent finishes (with --project: until Ctrl-C)')
    .option('--since <seq>', 'only output after this chunk sequence number (one agent only)', parseSeq)
    .option('--tail <n>', 'only the last N lines (with --project: of each agent)', parseTail)
    .addOption(new Option('--stream <stream>', 'only this stream (default: both, in the order they were captured)').choices(['stdout', 'stderr']))
    .option('--project <project>', 'every agent of this project (id or name) instead of one agent')
    .addHelpText(
      'after',
      `
Output goes to stdout as the agent wrote it: stdout and stderr merged in the order they were
captured (--stream picks one), platform notes such as "log limit reached" included. With -f the
log is followed until the agent's run is over (exit 0) or Ctrl-C; a dropped connection or a
restarting hub is resumed right after the last chunk printed, so nothing is lost or repeated
(a note goes to stderr). With --project every line is prefixed with the agent's name, coloured
on a terminal unless NO_COLOR is set; -f then follows all of them, picks up agents created later
(shown from their first line) and runs until Ctrl-C.

Examples:
  $ graft logs 0196f0c4-...
  $ graft logs 0196f0c4-... -f --tail 50
  $ graft logs 0196f0c4-... --stream stderr > errors.txt
  $ graft logs --project web -f`,
    )
    .action(async (agentId: string | undefined, flags: LogsFlags, cmd: Command) => {
      if (agentId !== undefined && flags.project !== undefined) throw new UsageError('give either an agent id or --project, not both');
      if (agentId === undefined && flags.project === undefined) throw new UsageError('missing agent id (or --project P for every agent of a project)');
      if (agentId !== undefined && !isUuid(agentId)) throw new UsageError(`${agentId} is not an agent id (graft agents ls lists them)`);
      if (flags.project !== undefined && flags.since !== undefined) throw new UsageError('--since takes one agent: sequence numbers are per agent');
      const client = ctx.client(cmd);
      const out = streamOutput(process.stdout);
      const query: AgentLogQuery = {
        ...(flags.tail !== undefined ? { tail: flags.tail } : {}),
        ...(flags.since !== undefined ? { since: flags.since } : {}),
        ...(flags.stream !== undefined ? { stream: flags.stream } : {}),
      };
      if (agentId !== undefined) {
        if (!flags.follow) return printOne(client, agentId.toLowerCase(), query, out);
        const interrupt = interruptible();
        try {
          return await followOne(client, agentId.toLowerCase(), query, out, ctx.io, interrupt.signal);
        } finally {
          interrupt.dispose();
        }
      }
      const projectId = await resolveProjectId(client, flags.project ?? '');
      // NO_COLOR is read from the environment main.ts captured (the CLI reads process.env nowhere else).
      const printer = new PrefixedPrinter(out, useColour(process.stdout.isTTY === true, ctx.env.hubEnv.NO_COLOR));
      if (!flags.follow) return printProject(client, projectId, query, printer);
      const interrupt = interruptible();
      try {
        await followProject(client, projectId, flags, printer, ctx.io, interrupt.signal);
      } finally {
        interrupt.dispose();
      }
    });
}
