import type { GraftClient } from '@graft/client';
import { type Agent, type CreateAgentRequest, type ListAgentsQuery, Phase } from '@graft/protocol';
import { type Command, Option } from 'commander';
import { type CliContext, withConnectionOptions } from '../context.js';
import { CliError } from '../errors.js';
import { formatDetails } from '../output/details.js';
import { formatAge, formatLabels, formatTime, orDash } from '../output/format.js';
import { printJson } from '../output/io.js';
import { type Column, formatTable } from '../output/table.js';
import { collectKeyValue } from '../parse/options.js';
import { resolveProjectId } from '../resolve/project-ref.js';
import { type ListFlags, pageArgs, printPage, withListOptions } from './list-support.js';

/** Where an agent runs, or why it does not yet. */
function placement(a: Agent): string {
  if (a.brokerId) return a.brokerId;
  return a.pendingReason ? `(pending: ${a.pendingReason})` : '-';
}

/** Agents as a table; the project column is left out when the list is for one project. */
export function agentsTable(items: readonly Agent[], options: { withProject?: boolean; now?: number } = {}): string {
  const withProject = options.withProject ?? true;
  const now = options.now ?? Date.now();
  const columns: Column[] = [
    { header: 'id' },
    { header: 'name' },
    ...(withProject ? [{ header: 'project' }] : []),
    { header: 'phase' },
    { header: 'activity' },
    { header: 'desired' },
    { header: 'broker' },
    { header: 'age' },
  ];
  return formatTable(
    columns,
    items.map((a) => [a.id, a.name, ...(withProject ? [a.projectId] : []), a.phase, orDash(a.activity), a.desiredState, placement(a), formatAge(a.createdAt, now)]),
  );
}

/** One agent in full. */
export function agentDetails(a: Agent): string {
  return formatDetails([
    ['ID', a.id],
    ['Name', a.name],
    ['Project', a.projectId],
    ['Template', `${a.templateId} (version ${a.templateVersion})`],
    ['Phase', a.phase],
    ['Activity', orDash(a.activity)],
    ['Detail', orDash(a.detail)],
    ['Desired state', `${a.desiredState} (generation ${a.generation})`],
    ['Broker', orDash(a.brokerId)],
    ['Pending reason', orDash(a.pendingReason)],
    ['Labels', formatLabels(a.labels)],
    ['Task', orDash(a.task)],
    ['Created by', orDash(a.createdBy)],
    ['Created', formatTime(a.createdAt)],
    ['Updated', formatTime(a.updatedAt)],
    ['Last seen', formatTime(a.lastSeenAt)],
  ]);
}

interface ListAgentFlags extends ListFlags {
  project?: string;
  phase?: ListAgentsQuery['phase'];
  user?: string;
  broker?: string;
}

interface CreateAgentFlags {
  project: string;
  name: string;
  template: string;
  task?: string;
  env?: Record<string, string>;
  label?: Record<string, string>;
  broker?: string;
  json?: boolean;
}

async function listFilters(client: GraftClient, opts: ListAgentFlags): Promise<ListAgentsQuery> {
  let userId = opts.user;
  if (userId === 'me') {
    const me = await client.me();
    if (me.kind !== 'user') throw new CliError('forbidden', '--user me needs a user token, not an agent token');
    userId = me.user.id;
  }
  return {
    ...(opts.project !== undefined ? { projectId: await resolveProjectId(client, opts.project) } : {}),
    ...(opts.phase !== undefined ? { phase: opts.phase } : {}),
    ...(userId !== undefined ? { userId } : {}),
    ...(opts.broker !== undefined ? { brokerId: opts.broker } : {}),
  };
}

const ACTIONS = {
  suspend: 'Suspend an agent, keeping its workspace and harness session for a later start',
  start: 'Start an agent: resumes a suspended session, or starts a stopped or failed agent afresh',
  restart: 'Restart an agent: stop, then start a fresh session',
  stop: 'Stop an agent',
} as const;

/** `graft agents ls|show|create|suspend|start|restart|stop|rm`. */
export function registerAgentsCommand(program: Command, ctx: CliContext): void {
  const agents = program
    .command('agents')
    .description('Create agents from templates, list and inspect them, and drive their lifecycle')
    .addHelpText(
      'after',
      `
Lifecycle actions change the agent's desired state; a broker then converges its phase to it.

Examples:
  $ graft agents create --project web --name fix-login --template claude --task "Fix the login redirect"
  $ graft agents ls --project web --phase running
  $ graft agents suspend 0196f0c4-...
  $ graft agents rm 0196f0c4-...`,
    );

  withListOptions(
    withConnectionOptions(agents.command('ls'))
      .description('List the agents you can see')
      .option('--project <project>', 'only this project (id or name)')
      .addOption(new Option('--phase <phase>', 'only agents in this phase').choices(Phase.options))
      .option('--user <user>', 'only agents created by this user id (or "me")')
      .option('--broker <broker>', 'only agents placed on this broker id'),
  ).action(async (opts: ListAgentFlags, cmd: Command) => {
    const client = ctx.client(cmd);
    const filters = await listFilters(client, opts);
    const page = await client.listAgents({ ...pageArgs(opts), ...filters });
    printPage(ctx.io, page, opts, (items) => agentsTable(items, { withProject: filters.projectId === undefined }), 'agents');
  });

  withConnectionOptions(agents.command('show'))
    .description('Show one agent: phase, activity, desired state, placement')
    .argument('<id>', 'agent id')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const agent = await ctx.client(cmd).getAgent(id);
      if (opts.json) printJson(ctx.io, agent);
      else ctx.io.out(agentDetails(agent));
    });

  withConnectionOptions(agents.command('create'))
    .description('Create an agent from a template and dispatch it to a broker; with none fitting it waits in phase created, saying why')
    .requiredOption('--project <project>', 'project id or name')
    .requiredOption('--name <name>', 'agent name, unique in the project (lower-case letters, digits, dashes)')
    .requiredOption('--template <template>', 'template id or name, optionally pinned to a version: name@3')
    .option('--task <text>', 'what the agent should do')
    .option('--env <KEY=VALUE>', 'an environment variable (repeatable)', collectKeyValue)
    .option('--label <key=value>', 'a label (repeatable)', collectKeyValue)
    .option('--broker <broker>', 'place it on this broker id')
    .option('--json', 'print the raw JSON')
    .addHelpText('after', '\nExample:\n  $ graft agents create --project web --name fix-login --template claude@2 --task "Fix the login redirect" --label ticket=123')
    .action(async (opts: CreateAgentFlags, cmd: Command) => {
      const client = ctx.client(cmd);
      const body: CreateAgentRequest = {
        projectId: await resolveProjectId(client, opts.project),
        name: opts.name,
        template: opts.template,
        ...(opts.task !== undefined ? { task: opts.task } : {}),
        ...(opts.env !== undefined ? { env: opts.env } : {}),
        ...(opts.label !== undefined ? { labels: opts.label } : {}),
        ...(opts.broker !== undefined ? { brokerId: opts.broker } : {}),
      };
      const agent = await client.createAgent(body);
      if (opts.json) return printJson(ctx.io, agent);
      const where = agent.brokerId ? `; dispatched to broker ${agent.brokerId}` : agent.pendingReason ? `; waiting for a broker (${agent.pendingReason})` : '';
      ctx.io.out(`Created agent ${agent.name} (${agent.id}) in phase ${agent.phase}${where}.`);
    });

  for (const [action, description] of Object.entries(ACTIONS) as Array<[keyof typeof ACTIONS, string]>) {
    withConnectionOptions(agents.command(action))
      .description(description)
      .argument('<id>', 'agent id')
      .option('--json', 'print the updated agent as JSON')
      .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
        const agent = await ctx.client(cmd).agentAction(id, action);
        if (opts.json) return printJson(ctx.io, agent);
        ctx.io.out(`Agent ${agent.name} (${agent.id}): desired ${agent.desiredState} (generation ${agent.generation}), phase ${agent.phase}.`);
      });
  }

  withConnectionOptions(agents.command('rm'))
    .description('Delete an agent: removed at once when no broker holds it, otherwise its broker stops and removes it')
    .argument('<id>', 'agent id')
    .option('--json', 'print {deleted, agent} as JSON')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const agent = await ctx.client(cmd).deleteAgent(id);
      if (opts.json) return printJson(ctx.io, { deleted: agent === undefined, agent: agent ?? null });
      ctx.io.out(agent === undefined ? `Deleted agent ${id}.` : `Deleting agent ${agent.name} (${id}): its broker ${agent.brokerId ?? ''} will stop and remove it.`);
    });

  withConnectionOptions(agents.command('message'))
    .description('Send a message to an agent: stored by the hub and delivered through its broker while it runs')
    .argument('<id>', 'agent id')
    .argument('<text>', 'the message')
    .option('--wake', 'resume the agent first if it is suspended')
    .option('--interrupt', 'ask the agent to interrupt its current step')
    .option('--json', 'print the stored message as JSON')
    .addHelpText('after', '\nThe agent reads it with `graft-agent inbox`.\n\nExample:\n  $ graft agents message 0196f0c4-... "use the main branch" --wake')
    .action(async (id: string, text: string, opts: { wake?: boolean; interrupt?: boolean; json?: boolean }, cmd: Command) => {
      const m = await ctx.client(cmd).sendMessage(id, { body: text, ...(opts.wake ? { wake: true } : {}), ...(opts.interrupt ? { interrupt: true } : {}) });
      if (opts.json) return printJson(ctx.io, m);
      ctx.io.out(`Message ${m.id} to agent ${id} stored (${m.state}); it is delivered while the agent runs.`);
    });

  withListOptions(withConnectionOptions(agents.command('messages')))
    .description('List the messages sent to an agent, with their delivery state')
    .argument('<id>', 'agent id')
    .action(async (id: string, opts: ListFlags, cmd: Command) => {
      const page = await ctx.client(cmd).listMessages(id, pageArgs(opts));
      printPage(
        ctx.io,
        page,
        opts,
        (items) =>
          formatTable(
            [{ header: 'id' }, { header: 'state' }, { header: 'sent' }, { header: 'message', maxWidth: 60 }],
            items.map((m) => [m.id, m.state, formatTime(m.createdAt), m.body]),
          ),
        'messages',
      );
    });
}
