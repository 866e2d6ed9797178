#!/usr/bin/env node
import { GraftApiError } from '@graft/client';
import { Activity, type AgentStatusResponse } from '@graft/protocol';
import { Command, CommanderError, Option } from 'commander';
import { AgentClient } from './agent-client.js';
import { AgentConfigError, loadInbox } from './config.js';
import { HOOK_HARNESSES, type HookHarness } from './hook-mapping.js';
import { type InboxMessage, readNewMessages, waitForMessages } from './inbox-reader.js';

/** A bad argument: exit 2, like commander's own usage errors. */
class UsageError extends Error {}

/** Hooks run inside the harness's own loop: never hold it up for long. */
const HOOK_TIMEOUT_MS = 5_000;
/** A harness that leaves stdin open without writing must not hang the hook. */
const STDIN_TIMEOUT_MS = 2_000;

const fail = (message: string, code: number): never => {
  process.stderr.write(`graft-agent: ${message}\n`);
  process.exit(code);
};

function parseActivity(value: string): Activity {
  const r = Activity.safeParse(value);
  if (!r.success) throw new UsageError(`unknown activity ${JSON.stringify(value)}; one of ${Activity.options.join(', ')}`);
  return r.data;
}

function parseSeconds(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${name} must be a positive number of seconds, got ${JSON.stringify(value)}`);
  return n;
}

function printStatus(r: AgentStatusResponse): void {
  process.stdout.write(`phase=${r.phase} activity=${r.activity ?? '-'}\n`);
  if (r.ignored.includes('activity')) process.stderr.write(`graft-agent: activity stays ${r.activity} (sticky; hook events do not overwrite it)\n`);
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const done = () => {
      clearTimeout(timer);
      process.stdin.pause();
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const timer = setTimeout(done, STDIN_TIMEOUT_MS);
    process.stdin.on('data', (c: Buffer) => chunks.push(c));
    process.stdin.once('end', done);
    process.stdin.once('error', done);
  });
}

function printMessages(messages: InboxMessage[], json: boolean): void {
  for (const m of messages) process.stdout.write(json ? `${JSON.stringify(m)}\n` : `${m.text}\n`);
}

function buildProgram(): Command {
  const agent = () => AgentClient.fromEnv(process.env);
  const program = new Command('graft-agent')
    .description('Report status to the Graft hub from inside an agent, relay harness hooks, read the inbox')
    .exitOverride()
    .showSuggestionAfterError(false);

  program
    .command('status')
    .description(`Report what the agent is doing (${Activity.options.filter((a) => a !== 'stalled' && a !== 'offline').join(', ')})`)
    .argument('<activity>', 'the activity')
    .argument('[message]', 'detail: what it is working on')
    .action(async (activity: string, message: string | undefined) => printStatus(await agent().status(parseActivity(activity), message)));

  program
    .command('ask')
    .description('Ask the operator a question (activity waiting_for_input until the agent reports again)')
    .argument('<question>')
    .action(async (question: string) => printStatus(await agent().ask(question)));

  program
    .command('blocked')
    .description('Report being blocked on something outside the agent')
    .argument('<why>')
    .action(async (why: string) => printStatus(await agent().blocked(why)));

  program
    .command('done')
    .description('Report the task completed')
    .argument('<summary>')
    .action(async (summary: string) => printStatus(await agent().done(summary)));

  program
    .command('hook')
    .description('Relay a harness hook event (JSON on stdin, or as an argument); always exits 0 so the harness is never disturbed')
    .argument('<event>', 'the hook event name, e.g. PreToolUse')
    .argument('[payload]', 'the event JSON, for harnesses that pass it as an argument (codex notify)')
    .addOption(new Option('--harness <name>', 'which harness sent the event').choices(HOOK_HARNESSES).default('claude-code'))
    .action(async (event: string, payloadArg: string | undefined, opts: { harness: HookHarness }) => {
      try {
        const raw = payloadArg ?? (await readStdin());
        let payload: unknown = {};
        if (raw.trim() !== '') {
          try {
            payload = JSON.parse(raw);
          } catch {
            process.stderr.write('graft-agent: hook payload is not JSON; relaying the event without it\n');
          }
        }
        await AgentClient.fromEnv(process.env, { timeoutMs: HOOK_TIMEOUT_MS }).hook(event, payload, opts.harness);
      } catch (err) {
        process.stderr.write(`graft-agent: warning: hook ${event} not reported: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    });

  program
    .command('inbox')
    .description('Print messages that arrived since the last read (the text of each; --json for the records). Prints nothing when there are none')
    .option('--wait', 'wait until at least one message arrives')
    .option('--timeout <secs>', 'with --wait: give up after this many seconds (exit 0, nothing printed)')
    .option('--json', 'print each message as its JSON record {at, text}')
    .action(async (opts: { wait?: boolean; timeout?: string; json?: boolean }) => {
      if (opts.timeout !== undefined && !opts.wait) throw new UsageError('--timeout applies only with --wait');
      const inbox = loadInbox(process.env);
      const timeoutMs = opts.timeout === undefined ? Number.POSITIVE_INFINITY : parseSeconds('--timeout', opts.timeout) * 1000;
      printMessages(opts.wait ? await waitForMessages(inbox.path, timeoutMs, 200, inbox.offsetFile) : await readNewMessages(inbox.path, inbox.offsetFile), opts.json === true);
    });

  program
    .command('heartbeat')
    .description('Send heartbeats in the foreground until interrupted; failures are reported and retried')
    .option('--every <secs>', 'seconds between heartbeats', '30')
    .action(async (opts: { every: string }) => {
      const everyMs = parseSeconds('--every', opts.every) * 1000;
      const client = agent();
      await new Promise<void>((resolve) => {
        const stop = client.startHeartbeat(everyMs, (err) =>
          process.stderr.write(`graft-agent: warning: heartbeat failed (retrying): ${err instanceof Error ? err.message : String(err)}\n`),
        );
        const end = () => {
          stop();
          resolve();
        };
        process.once('SIGINT', end);
        process.once('SIGTERM', end);
      });
    });

  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (err) {
    // Commander printed its own message (or the help) already.
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
    if (err instanceof UsageError || err instanceof AgentConfigError) fail(err.message, 2);
    if (err instanceof GraftApiError) fail(`${err.message} (${err.code}${err.status ? `, HTTP ${err.status}` : ''})`, 1);
    throw err;
  }
}

main().catch((err: unknown) => fail(`unexpected failure: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, 1));
