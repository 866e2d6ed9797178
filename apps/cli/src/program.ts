import { Command } from 'commander';
import { registerAgentsCommand } from './commands/agents-command.js';
import { registerApiKeysCommand } from './commands/api-keys-command.js';
import { registerAuthCommands } from './commands/auth-command.js';
import { registerBrokerCommand } from './commands/broker-command.js';
import { registerHubCommand } from './commands/hub-command.js';
import { registerAttachCommand } from './commands/attach-command.js';
import { registerLogsCommand } from './commands/logs-command.js';
import { registerProjectsCommand } from './commands/projects-command.js';
import { registerTemplatesCommand } from './commands/templates-command.js';
import type { CliContext } from './context.js';
import { oneLine } from './output/one-line.js';
import { CLI_VERSION } from './version.js';

/**
 * The `graft` command tree. Commander never exits the process: it throws a CommanderError that
 * main.ts turns into an exit code. Subcommands inherit these settings because they are created
 * with `.command()`.
 */
export function buildProgram(ctx: CliContext): Command {
  const program = new Command('graft')
    .description('Operate a Graft hub: projects, templates, agents, API keys and brokers; or run the hub itself')
    .version(CLI_VERSION, '-V, --version', 'print the CLI version')
    .option('--hub <url>', 'hub URL (overrides GRAFT_HUB_URL and the stored credentials)')
    .option('--token <token>', 'API key or JWT (overrides GRAFT_TOKEN and the stored credentials)')
    // Program options only before the command, so a command's own flags (templates show --version)
    // are never taken as the program's; --hub/--token are also offered by every hub command itself.
    .enablePositionalOptions()
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({
      writeOut: (text) => ctx.io.out(text.replace(/\n$/, '')),
      writeErr: (text) => ctx.io.err(text.replace(/\n$/, '')),
      outputError: (text, write) => write(`graft: ${oneLine(text.replace(/^error: /, ''))}\n`),
    })
    .addHelpText(
      'after',
      `
Connection: each of the hub URL and token is taken from the --hub/--token flags, else from
GRAFT_HUB_URL/GRAFT_TOKEN, else from the file graft login wrote ($GRAFT_CONFIG_DIR or ~/.graft,
credentials.json). Read commands take --json to print the hub's JSON as is. Exit codes: 0 ok,
1 failed (one line on stderr: graft: <message> (code <code>, request <id>)), 2 usage error.

Examples:
  $ graft login --hub http://127.0.0.1:8080 --token <api key>
  $ graft projects register web --git-remote git@github.com:acme/web.git
  $ graft agents ls --project web --json
  $ graft broker register --name node-1
  $ graft hub start`,
    );
  registerAuthCommands(program, ctx);
  registerHubCommand(program, ctx);
  registerProjectsCommand(program, ctx);
  registerTemplatesCommand(program, ctx);
  registerAgentsCommand(program, ctx);
  registerLogsCommand(program, ctx);
  registerAttachCommand(program, ctx);
  registerApiKeysCommand(program, ctx);
  registerBrokerCommand(program, ctx);
  return program;
}
