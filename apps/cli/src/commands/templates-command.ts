import { BrokerRuntime, type CreateTemplateRequest, Harness, type Template, type TemplateVersion } from '@graft/protocol';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type CliContext, withConnectionOptions } from '../context.js';
import { formatDetails } from '../output/details.js';
import { formatAge, formatLabels, formatTime, orDash } from '../output/format.js';
import { printJson } from '../output/io.js';
import { formatTable } from '../output/table.js';
import { collectCommand, collectKeyValue, parsePositiveInt } from '../parse/options.js';
import { resolveProjectId } from '../resolve/project-ref.js';
import { type ListFlags, pageArgs, printPage, withListOptions } from './list-support.js';

/** Templates as a table. */
export function templatesTable(items: readonly Template[], now = Date.now()): string {
  return formatTable(
    [{ header: 'id' }, { header: 'name' }, { header: 'project' }, { header: 'version', align: 'right' }, { header: 'harness' }, { header: 'image', maxWidth: 40 }, { header: 'updated' }],
    items.map((t) => [t.id, t.name, t.projectId ?? '(global)', String(t.latestVersion), t.latest.harness, orDash(t.latest.image), formatAge(t.updatedAt, now)]),
  );
}

/** The content of one version as detail lines. */
function versionPairs(v: TemplateVersion): Array<[string, string | string[]]> {
  const req = v.requirements;
  return [
    ['Version', String(v.version)],
    ['Harness', v.harness],
    ['Runtime', v.runtime ?? req?.runtime ?? (v.image !== undefined ? 'docker (has an image)' : 'any the broker offers')],
    ['Network', (v.network ?? req?.network ?? true) ? 'yes' : 'no (hub reachable through the broker only)'],
    ['Image', orDash(v.image)],
    ['Command', v.command ? v.command.map((a) => JSON.stringify(a)).join(' ') : '-'],
    ['Env', Object.keys(v.env ?? {}).sort().map((k) => `${k}=${v.env?.[k] ?? ''}`)],
    ['Resources', v.resources ? `memoryMb=${orDash(v.resources.memoryMb)} cpus=${orDash(v.resources.cpus)}` : '-'],
    ['Broker labels', formatLabels(req?.labels ?? {})],
    ['Content hash', v.contentHash],
    ['Version created', formatTime(v.createdAt)],
  ];
}

/** A template with its latest version. */
export function templateDetails(t: Template): string {
  return formatDetails([['ID', t.id], ['Name', t.name], ['Project', t.projectId ?? '(global)'], ['Latest version', String(t.latestVersion)], ...versionPairs(t.latest)]);
}

/** One template version. */
export function templateVersionDetails(v: TemplateVersion): string {
  return formatDetails([['Template', v.templateId], ...versionPairs(v)]);
}

interface CreateFlags {
  harness: CreateTemplateRequest['harness'];
  project?: string;
  image?: string;
  command?: string[];
  env?: Record<string, string>;
  runtime?: BrokerRuntime;
  network: boolean;
  memoryMb?: number;
  cpus?: number;
  label?: Record<string, string>;
  json?: boolean;
}

function parseCpus(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0.01 || n > 1024) throw new InvalidArgumentError('expected a number of CPUs between 0.01 and 1024, e.g. 0.5');
  return n;
}

/** `graft templates create|ls|show`. */
export function registerTemplatesCommand(program: Command, ctx: CliContext): void {
  const templates = program
    .command('templates')
    .description('Create and inspect agent templates (harness, image, command, env); every change is a new immutable version')
    .addHelpText(
      'after',
      `
Examples:
  $ graft templates create sleeper --project web --harness command --command "sleep 3600"
  $ graft templates ls --project web
  $ graft templates show 0196f0c4-... --version 1`,
    );

  withConnectionOptions(templates.command('create'))
    .description('Create a template and its version 1 (without --project it is global, which needs a platform admin)')
    .argument('<name>', 'lower-case letters, digits and dashes')
    .addOption(new Option('--harness <harness>', 'how the agent is started').choices(Harness.options).makeOptionMandatory())
    .option('--project <project>', 'project id or name (default: a global template)')
    .option('--image <image>', 'container image (implies --runtime docker unless given)')
    .addOption(new Option('--runtime <runtime>', 'where agents run; default: docker with --image, else whatever the broker offers').choices(BrokerRuntime.options))
    .option('--no-network', 'cut agents off the network (they still reach the hub through their broker); needs bwrap or docker')
    .option('--memory-mb <n>', 'memory limit in MiB (docker runtime)', parsePositiveInt)
    .option('--cpus <n>', 'CPU limit, e.g. 0.5 (docker runtime)', parseCpus)
    .option('--label <key=value>', 'a broker label the agents need (repeatable)', collectKeyValue)
    .option(
      '--command <command>',
      'the command to run, split into arguments like a shell would (quotes respected, nothing expanded); repeat to append more arguments',
      collectCommand,
    )
    .option('--env <KEY=VALUE>', 'an environment variable (repeatable)', collectKeyValue)
    .option('--json', 'print the raw JSON')
    .addHelpText(
      'after',
      `
Each --command value is split into arguments like a shell would; repeating the flag appends:
  --command "sleep 3600"  is the same as  --command sleep --command 3600      -> ["sleep", "3600"]
  --command "sh -c 'echo hi; sleep 60'"                                     -> ["sh", "-c", "echo hi; sleep 60"]

Examples:
  $ graft templates create claude --harness claude-code --image ghcr.io/acme/claude:1 --env LOG_LEVEL=debug
  $ graft templates create sleeper --project web --harness command --command "sleep 3600"
  $ graft templates create boxed --project web --harness script --command agent.mjs --runtime bwrap --no-network
  $ graft templates create capped --project web --harness command --command "make test" --image localhost/graft-agent:latest --memory-mb 512 --cpus 1`,
    )
    .action(async (name: string, opts: CreateFlags, cmd: Command) => {
      const client = ctx.client(cmd);
      const body: CreateTemplateRequest = {
        name,
        harness: opts.harness,
        ...(opts.project !== undefined ? { projectId: await resolveProjectId(client, opts.project) } : {}),
        ...(opts.image !== undefined ? { image: opts.image } : {}),
        ...(opts.command !== undefined ? { command: opts.command } : {}),
        ...(opts.env !== undefined ? { env: opts.env } : {}),
        ...(opts.runtime !== undefined ? { runtime: opts.runtime } : {}),
        ...(opts.network === false ? { network: false } : {}),
        ...(opts.memoryMb !== undefined || opts.cpus !== undefined
          ? { resources: { ...(opts.memoryMb !== undefined ? { memoryMb: opts.memoryMb } : {}), ...(opts.cpus !== undefined ? { cpus: opts.cpus } : {}) } }
          : {}),
        ...(opts.label !== undefined ? { requirements: { labels: opts.label } } : {}),
      };
      const t = await client.createTemplate(body);
      if (opts.json) return printJson(ctx.io, t);
      ctx.io.out(`Created template ${t.name} (${t.id}), version ${t.latestVersion}.`);
      ctx.io.out(templateDetails(t));
    });

  withListOptions(
    withConnectionOptions(templates.command('ls')).description('List global templates and those of your projects').option('--project <project>', 'only this project\'s templates (id or name)'),
  ).action(async (opts: ListFlags & { project?: string }, cmd: Command) => {
    const client = ctx.client(cmd);
    const projectId = opts.project !== undefined ? await resolveProjectId(client, opts.project) : undefined;
    const page = await client.listTemplates({ ...pageArgs(opts), ...(projectId ? { projectId } : {}) });
    printPage(ctx.io, page, opts, (items) => templatesTable(items), 'templates');
  });

  withConnectionOptions(templates.command('show'))
    .description('Show a template with its latest version, or one given version')
    .argument('<id>', 'template id')
    .option('--version <n>', 'show this version instead of the latest', parsePositiveInt)
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: { version?: number; json?: boolean }, cmd: Command) => {
      const client = ctx.client(cmd);
      if (opts.version !== undefined) {
        const v = await client.getTemplateVersion(id, opts.version);
        if (opts.json) printJson(ctx.io, v);
        else ctx.io.out(templateVersionDetails(v));
        return;
      }
      const t = await client.getTemplate(id);
      if (opts.json) printJson(ctx.io, t);
      else ctx.io.out(templateDetails(t));
    });
}
