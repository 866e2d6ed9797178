import { GraftClient } from '@graft/client';
import type { Command } from 'commander';
import type { CliEnv } from './config.js';
import { type Connection, type ConnectionFlags, resolveConnection } from './connection.js';
import { readCredentials } from './credentials.js';
import type { Io } from './output/io.js';

/** What every command gets: the environment read by main.ts, output, and the hub connection. */
export interface CliContext {
  env: CliEnv;
  io: Io;
  /** The hub and token for this invocation: flags, then env, then the credentials file. */
  connection(cmd: Command): Connection;
  /** A client for {@link CliContext.connection}. */
  client(cmd: Command): GraftClient;
}

/** Adds the `--hub` / `--token` overrides to a command that talks to a hub. */
export function withConnectionOptions(cmd: Command): Command {
  return cmd
    .option('--hub <url>', 'hub URL (overrides GRAFT_HUB_URL and the stored credentials)')
    .option('--token <token>', 'API key or JWT (overrides GRAFT_TOKEN and the stored credentials)');
}

/**
 * `--hub` / `--token` as given on the command line, before the command (`graft --hub U ls`) or
 * after it (`graft projects ls --hub U`); the one nearest the command wins.
 */
export function connectionFlags(cmd: Command): ConnectionFlags {
  let hub: string | undefined;
  let token: string | undefined;
  for (let c: Command | null = cmd; c !== null; c = c.parent) {
    const o = c.opts<ConnectionFlags>();
    hub ??= o.hub;
    token ??= o.token;
  }
  return { hub, token };
}

/** Builds the context main.ts hands to the commands. */
export function createContext(env: CliEnv, io: Io): CliContext {
  const connection = (cmd: Command): Connection => resolveConnection(connectionFlags(cmd), env, readCredentials(env.configDir));
  return {
    env,
    io,
    connection,
    client: (cmd) => {
      const c = connection(cmd);
      return new GraftClient({ baseUrl: c.hubUrl, token: c.token });
    },
  };
}
