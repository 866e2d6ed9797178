import { type ApiKey, ApiKeyScope, type CreateApiKeyRequest } from '@graft/protocol';
import type { Command } from 'commander';
import { type CliContext, withConnectionOptions } from '../context.js';
import { formatAge, orDash } from '../output/format.js';
import { printJson } from '../output/io.js';
import { formatTable } from '../output/table.js';
import { collectChoice, parseTimestamp } from '../parse/options.js';
import { type ListFlags, pageArgs, printPage, withListOptions } from './list-support.js';

/** `revoked`, `expired` or `active`. */
export function apiKeyStatus(k: ApiKey, now = Date.now()): string {
  if (k.revokedAt) return 'revoked';
  if (k.expiresAt && Date.parse(k.expiresAt) <= now) return 'expired';
  return 'active';
}

/** API keys as a table (never their tokens: the hub does not keep them). */
export function apiKeysTable(items: readonly ApiKey[], now = Date.now()): string {
  return formatTable(
    [{ header: 'id' }, { header: 'name', maxWidth: 40 }, { header: 'prefix' }, { header: 'scopes' }, { header: 'status' }, { header: 'expires' }, { header: 'last used' }, { header: 'age' }],
    items.map((k) => [
      k.id,
      k.name,
      k.prefix,
      k.scopes.join(','),
      apiKeyStatus(k, now),
      orDash(k.expiresAt),
      k.lastUsedAt ? `${formatAge(k.lastUsedAt, now)} ago` : 'never',
      formatAge(k.createdAt, now),
    ]),
  );
}

/** `graft api-keys create|ls|revoke`. */
export function registerApiKeysCommand(program: Command, ctx: CliContext): void {
  const keys = program
    .command('api-keys')
    .description('Manage your API keys: long-lived tokens for scripts, CI and graft login')
    .addHelpText(
      'after',
      `
Examples:
  $ graft api-keys create --name ci --scope read --expires 2030-01-31
  $ graft api-keys ls
  $ graft api-keys revoke 0196f0c4-...`,
    );

  withConnectionOptions(keys.command('create'))
    .description('Create an API key; its token is printed once and cannot be shown again')
    .requiredOption('--name <name>', 'what the key is for')
    .option('--expires <time>', 'expiry, ISO 8601 (e.g. 2030-01-31 or 2030-01-31T12:00:00Z); default never', parseTimestamp)
    .option('--scope <scope>', `${ApiKeyScope.options.join(' or ')} (repeatable; default: the scopes of the key you use)`, collectChoice(ApiKeyScope.options))
    .option('--json', 'print the raw JSON, token included')
    .action(async (opts: { name: string; expires?: string; scope?: CreateApiKeyRequest['scopes']; json?: boolean }, cmd: Command) => {
      const key = await ctx.client(cmd).createApiKey({
        name: opts.name,
        ...(opts.expires !== undefined ? { expiresAt: opts.expires } : {}),
        ...(opts.scope !== undefined ? { scopes: opts.scope } : {}),
      });
      if (opts.json) return printJson(ctx.io, key);
      ctx.io.out(`Created API key ${key.name} (${key.id}), scopes ${key.scopes.join(',')}, expires ${key.expiresAt ?? 'never'}.`);
      ctx.io.out('Token (shown only now; store it safely):');
      ctx.io.out(key.token);
    });

  withListOptions(withConnectionOptions(keys.command('ls')).description('List your API keys (names, prefixes, status; never the tokens)')).action(async (opts: ListFlags, cmd: Command) => {
    const page = await ctx.client(cmd).listApiKeys(pageArgs(opts));
    printPage(ctx.io, page, opts, (items) => apiKeysTable(items), 'API keys');
  });

  withConnectionOptions(keys.command('revoke'))
    .description('Revoke an API key at once; requests with it fail from now on')
    .argument('<id>', 'API key id (from graft api-keys ls)')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      await ctx.client(cmd).revokeApiKey(id);
      ctx.io.out(`Revoked API key ${id}.`);
    });
}
