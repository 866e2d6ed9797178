import { GraftClient } from '@graft/client';
import type { Me } from '@graft/protocol';
import type { Command } from 'commander';
import { type CliContext, connectionFlags, withConnectionOptions } from '../context.js';
import { normaliseHubUrl } from '../connection.js';
import { credentialsPath, removeCredentials, writeCredentials } from '../credentials.js';
import { UsageError } from '../errors.js';
import { printJson } from '../output/io.js';

/** One line saying who a token belongs to. */
export function describeMe(me: Me): string {
  if (me.kind === 'agent') return `agent ${me.agentId} (project ${me.projectId})`;
  const role = me.user.isAdmin ? ', platform admin' : '';
  return `${me.user.email} (user ${me.user.id}${role}, via ${me.via === 'api_key' ? 'API key' : 'JWT'}, scopes ${me.scopes.join(',')})`;
}

/** `graft login`, `graft logout`, `graft whoami`. */
export function registerAuthCommands(program: Command, ctx: CliContext): void {
  withConnectionOptions(program.command('login'))
    .description('Verify a hub URL and token, then store them in the credentials file (mode 0600) for later commands')
    .option('--json', 'print the /auth/me answer as JSON')
    .addHelpText(
      'after',
      `
The hub URL and token come from --hub and --token (or GRAFT_HUB_URL and
GRAFT_TOKEN). The token may be an API key (graft api-keys create) or a user JWT. It is checked
with GET /api/v1/auth/me before anything is written. The file is <config dir>/credentials.json,
where the config dir is $GRAFT_CONFIG_DIR or ~/.graft.

Examples:
  $ graft login --hub http://127.0.0.1:8080 --token 3f1c...e9
  $ GRAFT_TOKEN=3f1c...e9 graft login --hub https://graft.example.com`,
    )
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const flags = connectionFlags(cmd);
      const rawHub = flags.hub ?? ctx.env.hubUrl;
      const token = flags.token ?? ctx.env.token;
      if (rawHub === undefined || token === undefined) throw new UsageError('login needs --hub URL and --token T (or GRAFT_HUB_URL and GRAFT_TOKEN)');
      const hubUrl = normaliseHubUrl(rawHub);
      const me = await new GraftClient({ baseUrl: hubUrl, token }).me();
      const file = writeCredentials(ctx.env.configDir, { hubUrl, token });
      if (opts.json) {
        printJson(ctx.io, me);
        return;
      }
      ctx.io.out(`Logged in to ${hubUrl} as ${describeMe(me)}.`);
      ctx.io.out(`Credentials saved to ${file}.`);
    });

  program
    .command('logout')
    .description('Delete the stored credentials file')
    .action(() => {
      const file = credentialsPath(ctx.env.configDir);
      ctx.io.out(removeCredentials(ctx.env.configDir) ? `Removed ${file}.` : `Not logged in (no ${file}).`);
    });

  withConnectionOptions(program.command('whoami'))
    .description('Show who the current token belongs to (GET /api/v1/auth/me)')
    .option('--json', 'print the raw JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { hubUrl } = ctx.connection(cmd);
      const me = await ctx.client(cmd).me();
      if (opts.json) printJson(ctx.io, me);
      else ctx.io.out(`${describeMe(me)} on ${hubUrl}`);
    });
}
