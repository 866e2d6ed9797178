import { availableParallelism, hostname } from 'node:os';
import { resolve } from 'node:path';
import { GraftApiError, GraftClient } from '@graft/client';
import { type Broker, BrokerRuntime, type JoinBrokerResponse, type RegisterBrokerResponse } from '@graft/protocol';
import { type Command, InvalidArgumentError } from 'commander';
import { assertNoBrokerCredentials, writeBrokerCredentials } from '../broker-credentials.js';
import { normaliseHubUrl } from '../connection.js';
import { type CliContext, withConnectionOptions } from '../context.js';
import { CliError, UsageError } from '../errors.js';
import { formatDetails } from '../output/details.js';
import { waitForSignal } from '../signals.js';
import { formatAge, formatLabels, formatTime, orDash } from '../output/format.js';
import { printJson } from '../output/io.js';
import { formatTable } from '../output/table.js';
import { collectKeyValue, parsePositiveInt } from '../parse/options.js';
import { resolveProjectId } from '../resolve/project-ref.js';
import { CLI_VERSION } from '../version.js';
import { type ListFlags, pageArgs, printPage, withListOptions } from './list-support.js';

/** Quotes a word for a POSIX shell only when it needs it, so the printed command stays readable. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The command line an operator runs on the node to join a registered broker. */
export function joinCommandLine(hubUrl: string, res: RegisterBrokerResponse): string {
  return ['graft', 'broker', 'join', '--hub', hubUrl, '--broker-id', res.brokerId, '--token', res.joinToken].map(shellQuote).join(' ');
}

/** Parses `--runtimes process,docker`: known runtimes, no duplicates. */
export function parseRuntimes(value: string): BrokerRuntime[] {
  const out: BrokerRuntime[] = [];
  for (const raw of value.split(',')) {
    const r = raw.trim();
    const parsed = BrokerRuntime.safeParse(r);
    if (!parsed.success) throw new InvalidArgumentError(`unknown runtime ${JSON.stringify(r)} (allowed: ${BrokerRuntime.options.join(', ')})`);
    if (!out.includes(parsed.data)) out.push(parsed.data);
  }
  return out;
}

/** What a join failure means for the operator, by the hub's error code. */
const JOIN_ERRORS: Partial<Record<string, string>> = {
  join_token_consumed: 'this token was already used; register the broker again (graft broker register) for a new one',
  join_token_expired: 'this token has expired; register the broker again (graft broker register) for a new one',
  join_token_invalid: 'this token does not belong to this broker id; check the --broker-id and --token of the printed join command',
  not_found: 'unknown broker id; check --broker-id against the join command graft broker register printed',
};

/** Rewrites the hub's join errors into one clear line, keeping its code and request id for the report. */
function explainJoinError(err: unknown): unknown {
  if (!(err instanceof GraftApiError)) return err;
  const message = JOIN_ERRORS[err.code];
  return message === undefined ? err : new GraftApiError(err.status, err.code, message, err.requestId, err.details);
}

interface StartFlags {
  dataDir?: string;
  host?: string;
  port?: string;
  runtimes?: string;
  maxAgents?: string;
}

/** `online`/`offline`/`draining`, and `not joined` for a broker still waiting for its node. */
function brokerState(b: Broker): string {
  return b.joined ? b.status : 'not joined';
}

function heartbeat(b: Broker, now: number): string {
  return b.lastHeartbeatAt ? `${formatAge(b.lastHeartbeatAt, now)} ago` : 'never';
}

/** Brokers as a table. */
export function brokersTable(items: readonly Broker[], now = Date.now()): string {
  return formatTable(
    [
      { header: 'id' },
      { header: 'name', maxWidth: 40 },
      { header: 'status' },
      { header: 'joined' },
      { header: 'hostname', maxWidth: 40 },
      { header: 'runtimes' },
      { header: 'capacity', align: 'right' },
      { header: 'load', align: 'right' },
      { header: 'last heartbeat' },
    ],
    items.map((b) => [
      b.id,
      b.name,
      b.status,
      b.joined ? 'yes' : 'no',
      orDash(b.hostname),
      b.runtimes.length ? b.runtimes.join(',') : '-',
      orDash(b.capacity.maxAgents),
      String(b.load.runningAgents),
      heartbeat(b, now),
    ]),
  );
}

/** One broker in full. */
export function brokerDetails(b: Broker, now = Date.now()): string {
  const pairs: Array<[string, string | string[]]> = [
    ['ID', b.id],
    ['Name', b.name],
    ['Status', brokerState(b)],
    ['Joined', b.joined ? 'yes' : `no (join token expires ${formatTime(b.joinExpiresAt, now)})`],
    ['Hostname', orDash(b.hostname)],
    ['Version', orDash(b.version)],
    ['Runtimes', b.runtimes.length ? b.runtimes.join(',') : '-'],
    ['Labels', formatLabels(b.labels)],
    ['Projects', b.autoProvide ? [...b.projectIds, '(auto-provide: any project)'] : b.projectIds],
    ['Capacity', b.capacity.maxAgents === null ? '-' : `${b.capacity.maxAgents} agents`],
    ['Load', `${b.load.runningAgents} running`],
    ['Draining', b.draining ? 'yes' : 'no'],
    ['Last heartbeat', b.lastHeartbeatAt ? formatTime(b.lastHeartbeatAt, now) : 'never'],
    ['Created', formatTime(b.createdAt, now)],
  ];
  return formatDetails(pairs);
}

interface RegisterFlags {
  name: string;
  label?: Record<string, string>;
  project?: string[];
  autoProvide?: boolean;
  json?: boolean;
}

interface JoinFlags {
  hub: string;
  brokerId: string;
  token: string;
  dataDir?: string;
  hostname?: string;
  maxAgents?: number;
  runtimes?: BrokerRuntime[];
  force?: boolean;
  json?: boolean;
}

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

/** `graft broker register|join|ls|show`. */
export function registerBrokerCommand(program: Command, ctx: CliContext): void {
  const broker = program
    .command('broker')
    .description('Register broker nodes (the machines that run agents), join them to the hub, and inspect them')
    .addHelpText(
      'after',
      `
A broker joins in two steps: a platform admin registers it (graft broker register), which prints a
single-use join command; that command, run on the node, trades the token for the broker's secret
and stores it in the node's data dir.

Examples:
  $ graft broker register --name node-1 --label zone=eu --project web
  $ graft broker join --hub https://graft.example.com --broker-id 0196f0c4-... --token gjt_...
  $ graft broker ls
  $ graft broker show 0196f0c4-...`,
    );

  withConnectionOptions(broker.command('register'))
    .description('Register a broker (platform admin) and print the single-use command that joins it from its node')
    .requiredOption('--name <name>', 'broker name: lower-case letters, digits and dashes, unique on the hub')
    .option('--label <key=value>', 'a label agents can be placed by (repeatable)', collectKeyValue)
    .option('--project <project>', 'a project whose agents it may run, id or name (repeatable)', collect)
    .option('--auto-provide', 'run agents of any project, not only the linked ones')
    .option('--json', 'print the raw JSON {brokerId, joinToken, expiresAt}')
    .addHelpText(
      'after',
      `
The printed command carries the hub URL this CLI talks to, the broker id and the join token. The
token is secret, works once and expires (1 h by default); run the command on the node soon.

Example:
  $ graft broker register --name node-1 --label zone=eu --project web --project api`,
    )
    .action(async (opts: RegisterFlags, cmd: Command) => {
      const { hubUrl } = ctx.connection(cmd);
      const client = ctx.client(cmd);
      const projectIds: string[] = [];
      for (const ref of opts.project ?? []) projectIds.push(await resolveProjectId(client, ref));
      const res = await client.registerBroker({
        name: opts.name,
        ...(opts.label ? { labels: opts.label } : {}),
        ...(projectIds.length ? { projectIds } : {}),
        ...(opts.autoProvide ? { autoProvide: true } : {}),
      });
      if (opts.json) return printJson(ctx.io, res);
      ctx.io.out(`Registered broker ${opts.name} (${res.brokerId}).`);
      ctx.io.out(`Its join token expires at ${formatTime(res.expiresAt)}.`);
      ctx.io.out('Run this on the node (the token is secret and works only once):');
      ctx.io.out('');
      ctx.io.out(`  ${joinCommandLine(hubUrl, res)}`);
      ctx.io.out('');
    });

  // Not withConnectionOptions: here --hub is the hub to join and --token the join token, and no
  // stored user token is ever sent (the join endpoint is unauthenticated).
  broker
    .command('join')
    .description('On the node: join a registered broker to the hub and store its secret in the data dir')
    .requiredOption('--hub <url>', 'hub URL, as printed by graft broker register')
    .requiredOption('--broker-id <id>', 'broker id, as printed by graft broker register')
    .requiredOption('--token <token>', 'single-use join token, as printed by graft broker register')
    .option('--data-dir <dir>', 'where the broker keeps its files (default $GRAFT_BROKER_DATA_DIR or ~/.graft/broker)')
    .option('--hostname <name>', 'hostname to report (default this machine\'s)')
    .option('--max-agents <n>', 'most agents to run at once (default 4 per CPU)', parsePositiveInt)
    .option('--runtimes <list>', `comma-separated runtimes this node offers: ${BrokerRuntime.options.join(', ')} (default process)`, parseRuntimes)
    .option('--force', 'replace an existing credentials file in the data dir (the broker it belonged to loses its secret)')
    .option('--json', 'print {brokerId, hubUrl, credentialsFile} as JSON (never the secret)')
    .addHelpText(
      'after',
      `
Writes <data dir>/credentials.json {hubUrl, brokerId, secretKey, joinedAt} with mode 0600 (the dir
0700). A data dir that already holds credentials is refused unless --force. Several brokers can
share a machine, each with its own --data-dir.

Example:
  $ graft broker join --hub https://graft.example.com --broker-id 0196f0c4-... --token gjt_... --data-dir /var/lib/graft-broker --runtimes process,docker`,
    )
    .action(async (opts: JoinFlags) => {
      const hubUrl = normaliseHubUrl(opts.hub);
      const dataDir = resolve(opts.dataDir ?? ctx.env.brokerDataDir);
      // Checked before the hub call: a join consumes the token, so failing afterwards would waste it.
      if (!opts.force) assertNoBrokerCredentials(dataDir);
      let res: JoinBrokerResponse;
      try {
        res = await new GraftClient({ baseUrl: hubUrl }).joinBroker({
          brokerId: opts.brokerId,
          joinToken: opts.token,
          hostname: opts.hostname ?? hostname(),
          version: CLI_VERSION,
          runtimes: opts.runtimes ?? ['process'],
          capacity: { maxAgents: opts.maxAgents ?? availableParallelism() * 4 },
        });
      } catch (err) {
        throw explainJoinError(err);
      }
      let file: string;
      try {
        file = writeBrokerCredentials(dataDir, { hubUrl, brokerId: res.brokerId, secretKey: res.secretKey, joinedAt: new Date().toISOString() }, opts.force === true);
      } catch (err) {
        const why = err instanceof CliError ? err.message : `cannot write to ${dataDir}: ${(err as Error).message}`;
        throw new CliError('credentials_unwritable', `broker ${res.brokerId} joined, but its secret could not be saved (${why}); register the broker again`);
      }
      if (opts.json) return printJson(ctx.io, { brokerId: res.brokerId, hubUrl, credentialsFile: file });
      ctx.io.out(`Broker ${res.brokerId} joined ${hubUrl}.`);
      ctx.io.out(`Credentials written to ${file} (mode 0600; keep it secret).`);
      if (normaliseHubUrl(res.hubUrl) !== hubUrl) ctx.io.out(`Note: the hub calls itself ${res.hubUrl}; the broker will use ${hubUrl}, the URL given here.`);
      ctx.io.out(`Next: graft broker start --data-dir ${shellQuote(dataDir)}`);
    });

  withListOptions(withConnectionOptions(broker.command('ls')).description('List brokers with status, runtimes, capacity, load and last heartbeat (platform admin)'))
    .addHelpText('after', '\nExample:\n  $ graft broker ls --limit 20')
    .action(async (opts: ListFlags, cmd: Command) => {
      const page = await ctx.client(cmd).listBrokers(pageArgs(opts));
      printPage(ctx.io, page, opts, (items) => brokersTable(items), 'brokers');
    });

  withConnectionOptions(broker.command('show'))
    .description('Show one broker: status, version, runtimes, labels, projects, capacity and load (platform admin)')
    .argument('<id>', 'broker id (from graft broker ls)')
    .option('--json', 'print the raw JSON')
    .addHelpText('after', '\nExample:\n  $ graft broker show 0196f0c4-... --json')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const b = await ctx.client(cmd).getBroker(id);
      if (opts.json) printJson(ctx.io, b);
      else ctx.io.out(brokerDetails(b));
    });

  broker
    .command('start')
    .description('Run the broker daemon in the foreground from the credentials in its data dir (JSON logs on stdout) until SIGINT or SIGTERM')
    .option('--data-dir <dir>', 'data dir holding credentials.json (overrides GRAFT_BROKER_DATA_DIR; default ~/.graft/broker)')
    .option('--host <host>', 'interface of the local API (overrides GRAFT_BROKER_HOST; default 127.0.0.1)')
    .option('--port <port>', 'port of the local API, 0 for any free one (overrides GRAFT_BROKER_PORT; default 9800)')
    .option('--runtimes <list>', 'comma-separated runtimes to offer, in order of preference: process, bwrap, docker (overrides GRAFT_BROKER_RUNTIMES; default process)')
    .option('--max-agents <n>', 'most agents to run at once (overrides GRAFT_BROKER_MAX_AGENTS; default 4 per CPU)')
    .addHelpText(
      'after',
      `
Environment: GRAFT_BROKER_DATA_DIR, GRAFT_BROKER_HOST, GRAFT_BROKER_PORT, GRAFT_BROKER_RUNTIMES,
GRAFT_BROKER_MAX_AGENTS, GRAFT_BROKER_STOP_GRACE_MS, GRAFT_BROKER_HOSTNAME, GRAFT_BROKER_LOG_LIMIT_BYTES,
DOCKER_HOST, GRAFT_BROKER_DOCKER_IMAGE, GRAFT_BROKER_BACKOFF_BASE_MS, GRAFT_BROKER_BACKOFF_MAX_MS,
GRAFT_LOG_LEVEL (see docs/configuration.md).
Several brokers can run on one machine, each with its own --data-dir and --port.
Agents keep running when the daemon stops; the next start adopts them.

Example:
  $ graft broker start --data-dir /var/lib/graft-broker --port 0`,
    )
    .action(async (opts: StartFlags) => {
      const signalled = waitForSignal(['SIGINT', 'SIGTERM']);
      const brokerModule = await import('@graft/broker');
      const env = {
        ...ctx.env.hubEnv,
        GRAFT_BROKER_DATA_DIR: opts.dataDir !== undefined ? resolve(opts.dataDir) : ctx.env.brokerDataDir,
        ...(opts.host !== undefined ? { GRAFT_BROKER_HOST: opts.host } : {}),
        ...(opts.port !== undefined ? { GRAFT_BROKER_PORT: opts.port } : {}),
        ...(opts.runtimes !== undefined ? { GRAFT_BROKER_RUNTIMES: opts.runtimes } : {}),
        ...(opts.maxAgents !== undefined ? { GRAFT_BROKER_MAX_AGENTS: opts.maxAgents } : {}),
      };
      let config: ReturnType<typeof brokerModule.loadBrokerConfig>;
      try {
        config = brokerModule.loadBrokerConfig(env);
      } catch (err) {
        if (err instanceof brokerModule.BrokerConfigError) throw new UsageError(err.message.split('\n').map((l) => l.trim()).join(' '));
        throw err;
      }
      const { createLogger } = await import('@graft/log');
      const log = createLogger({ level: config.log.level, base: { service: 'graft-broker' } });
      let running: Awaited<ReturnType<typeof brokerModule.startBroker>>;
      try {
        running = await brokerModule.startBroker(config, log);
      } catch (err) {
        if (err instanceof brokerModule.CredentialsError) throw new CliError(err.code, err.message);
        throw err;
      }
      const outcome = await Promise.race([signalled.then((signal) => ({ signal })), running.revoked.then((reason) => ({ reason }))]);
      log.info('broker.shutdown', outcome);
      await running.stop();
      if ('reason' in outcome) throw new CliError('broker_revoked', `the hub revoked this broker (${outcome.reason}); register and join it again`);
    });

  for (const [action, description] of [
    ['drain', 'Stop placing new agents on a broker; its running agents continue (platform admin)'],
    ['undrain', 'Place agents on a drained broker again (platform admin)'],
  ] as const) {
    withConnectionOptions(broker.command(action))
      .description(description)
      .argument('<id>', 'broker id (from graft broker ls)')
      .option('--json', 'print the broker as JSON')
      .addHelpText('after', `\nExample:\n  $ graft broker ${action} 0196f0c4-...`)
      .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
        const b = await ctx.client(cmd).drainBroker(id, action === 'drain');
        if (opts.json) return printJson(ctx.io, b);
        ctx.io.out(`Broker ${b.name} (${b.id}) is ${b.status}${action === 'drain' ? `; ${b.load.runningAgents} agent(s) keep running there` : ''}.`);
      });
  }

  withConnectionOptions(broker.command('rotate-secret'))
    .description("Issue a new secret for a broker; the old one keeps working for the hub's grace period (platform admin)")
    .argument('<id>', 'broker id (from graft broker ls)')
    .option('--json', 'print {brokerId, secretKey, previousValidUntil} as JSON')
    .addHelpText('after', '\nPut the new secret into secretKey of <data dir>/credentials.json on the node and restart its\nbroker before the old one expires.\n\nExample:\n  $ graft broker rotate-secret 0196f0c4-...')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const r = await ctx.client(cmd).rotateBrokerSecret(id);
      if (opts.json) return printJson(ctx.io, r);
      ctx.io.out(`New secret for broker ${r.brokerId} (shown once, keep it secret):`);
      ctx.io.out('');
      ctx.io.out(`  ${r.secretKey}`);
      ctx.io.out('');
      ctx.io.out(`Put it into secretKey of the broker's credentials.json and restart it before ${formatTime(r.previousValidUntil)}, when the old secret stops working.`);
    });

  withConnectionOptions(broker.command('rm'))
    .description('Delete a broker: its secret stops working and its tunnel closes at once (platform admin)')
    .argument('<id>', 'broker id (from graft broker ls)')
    .addHelpText('after', "\nIts agents lose their broker; those wanted running are placed on other brokers.\n\nExample:\n  $ graft broker rm 0196f0c4-...")
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      await ctx.client(cmd).deleteBroker(id);
      ctx.io.out(`Deleted broker ${id}.`);
    });
}
