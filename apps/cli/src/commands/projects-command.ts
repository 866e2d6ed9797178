import type { Project, ProjectDetail } from '@graft/protocol';
import { type Command, InvalidArgumentError } from 'commander';
import { type CliContext, withConnectionOptions } from '../context.js';
import { UsageError } from '../errors.js';
import { formatDetails } from '../output/details.js';
import { formatAge, formatLabels, formatTime, orDash } from '../output/format.js';
import { printJson } from '../output/io.js';
import { formatTable } from '../output/table.js';
import { collectKeyValue, parsePositiveInt } from '../parse/options.js';
import { resolveProjectId } from '../resolve/project-ref.js';
import { type ListFlags, pageArgs, printPage, withListOptions } from './list-support.js';

function parseOnOff(value: string): boolean {
  if (value !== 'on' && value !== 'off') throw new InvalidArgumentError(`takes on or off, not ${JSON.stringify(value)}`);
  return value === 'on';
}

/** Projects as a table. */
export function projectsTable(items: readonly Project[], now = Date.now()): string {
  return formatTable(
    [{ header: 'id' }, { header: 'name' }, { header: 'role' }, { header: 'git remote', maxWidth: 60 }, { header: 'labels', maxWidth: 40 }, { header: 'age' }],
    items.map((p) => [p.id, p.name, orDash(p.role), orDash(p.gitRemote), formatLabels(p.labels), formatAge(p.createdAt, now)]),
  );
}

/** One project with its statistics. */
export function projectDetails(p: Project | ProjectDetail): string {
  const pairs: Array<[string, string | string[]]> = [
    ['ID', p.id],
    ['Name', p.name],
    ['Git remote', orDash(p.gitRemote)],
    ['Clone URL', orDash(p.cloneUrl)],
    ['Auto-suspend stalled', p.autoSuspendStalled ? 'on' : 'off'],
    ['Log retention', `${p.logRetentionDays} days`],
    ['Labels', formatLabels(p.labels)],
    ['Your role', p.role ?? '- (platform admin)'],
    ['Created', formatTime(p.createdAt)],
    ['Updated', formatTime(p.updatedAt)],
  ];
  if ('stats' in p) {
    const phases = Object.entries(p.stats.agentsByPhase)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([phase, n]) => `${phase}=${n}`);
    pairs.push(['Agents', `${p.stats.agentsTotal}${phases.length ? ` (${phases.join(', ')})` : ''}`], ['Last activity', formatTime(p.stats.lastActivityAt)]);
  }
  return formatDetails(pairs);
}

/** `graft projects register|ls|show|update`. */
export function registerProjectsCommand(program: Command, ctx: CliContext): void {
  const projects = program
    .command('projects')
    .description('Register and inspect projects (usually one per git repository)')
    .addHelpText(
      'after',
      `
Examples:
  $ graft projects register web --git-remote git@github.com:acme/web.git --label team=core
  $ graft projects ls
  $ graft projects show web
  $ graft projects update web --auto-suspend-stalled on`,
    );

  withConnectionOptions(projects.command('register'))
    .description('Register a project; the same git remote always maps to the same project (registering again is a no-op)')
    .argument('<name>', 'lower-case letters, digits and dashes')
    .option('--git-remote <remote>', 'git URL, scp-style remote (host:path) or absolute path')
    .option('--label <key=value>', 'a label (repeatable)', collectKeyValue)
    .option('--json', 'print the raw JSON {project, created}')
    .addHelpText('after', '\nExample:\n  $ graft projects register web --git-remote https://github.com/acme/web.git --label team=core --label tier=1')
    .action(async (name: string, opts: { gitRemote?: string; label?: Record<string, string>; json?: boolean }, cmd: Command) => {
      const res = await ctx.client(cmd).registerProject({
        name,
        ...(opts.gitRemote !== undefined ? { gitRemote: opts.gitRemote } : {}),
        ...(opts.label ? { labels: opts.label } : {}),
      });
      if (opts.json) return printJson(ctx.io, res);
      ctx.io.out(res.created ? `Registered project ${res.project.name} (${res.project.id}).` : `Project already registered: ${res.project.name} (${res.project.id}).`);
      ctx.io.out(projectDetails(res.project));
    });

  withListOptions(withConnectionOptions(projects.command('ls')).description('List the projects you can see')).action(async (opts: ListFlags, cmd: Command) => {
    const page = await ctx.client(cmd).listProjects(pageArgs(opts));
    printPage(ctx.io, page, opts, (items) => projectsTable(items), 'projects');
  });

  withConnectionOptions(projects.command('show'))
    .description('Show a project with agent counts by phase')
    .argument('<project>', 'project id, or a name if only one of your projects has it')
    .option('--json', 'print the raw JSON')
    .action(async (ref: string, opts: { json?: boolean }, cmd: Command) => {
      const client = ctx.client(cmd);
      const project = await client.getProject(await resolveProjectId(client, ref));
      if (opts.json) printJson(ctx.io, project);
      else ctx.io.out(projectDetails(project));
    });

  withConnectionOptions(projects.command('update'))
    .description('Rename a project, replace its labels, or turn auto-suspend of stalled agents on or off (project admin)')
    .argument('<project>', 'project id, or a name if only one of your projects has it')
    .option('--name <name>', 'new name')
    .option('--label <key=value>', 'a label (repeatable; replaces all labels)', collectKeyValue)
    .option('--auto-suspend-stalled <on|off>', 'suspend agents that stall (resume them with a start or a message with --wake)', parseOnOff)
    .option('--log-retention-days <n>', "days an agent's log is kept after its last write (1-3650)", parsePositiveInt)
    .option('--json', 'print the raw JSON')
    .addHelpText('after', '\nExample:\n  $ graft projects update web --auto-suspend-stalled on --log-retention-days 90')
    .action(async (ref: string, opts: { name?: string; label?: Record<string, string>; autoSuspendStalled?: boolean; logRetentionDays?: number; json?: boolean }, cmd: Command) => {
      const flag = opts.autoSuspendStalled;
      if (opts.name === undefined && opts.label === undefined && flag === undefined && opts.logRetentionDays === undefined) {
        throw new UsageError('nothing to update: give --name, --label, --auto-suspend-stalled or --log-retention-days');
      }
      const client = ctx.client(cmd);
      const project = await client.updateProject(await resolveProjectId(client, ref), {
        ...(opts.name !== undefined ? { name: opts.name } : {}),
        ...(opts.label !== undefined ? { labels: opts.label } : {}),
        ...(flag !== undefined ? { autoSuspendStalled: flag } : {}),
        ...(opts.logRetentionDays !== undefined ? { logRetentionDays: opts.logRetentionDays } : {}),
      });
      if (opts.json) printJson(ctx.io, project);
      else ctx.io.out(projectDetails(project));
    });
}
