import { homedir } from 'node:os';
import { join } from 'node:path';

/** An environment as a plain record; `process.env` fits. */
export type Environment = Readonly<Record<string, string | undefined>>;

/** What the CLI takes from its environment. Read once, by main.ts; nothing else reads process.env. */
export interface CliEnv {
  /** Directory holding credentials.json: GRAFT_CONFIG_DIR, default ~/.graft. */
  configDir: string;
  /** GRAFT_HUB_URL: overrides the stored hub URL (a --hub flag overrides this). */
  hubUrl: string | undefined;
  /** GRAFT_TOKEN: overrides the stored token (a --token flag overrides this). */
  token: string | undefined;
  /** Where `graft broker join|start` keep the broker's files: GRAFT_BROKER_DATA_DIR, default ~/.graft/broker. */
  brokerDataDir: string;
  /** The whole environment, for `graft hub start|migrate`, which configure the hub from it. */
  hubEnv: Environment;
}

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v.trim() === '' ? undefined : v.trim());

/** Parses the CLI's settings out of an environment. */
export function parseCliEnv(env: Environment): CliEnv {
  return {
    configDir: nonEmpty(env.GRAFT_CONFIG_DIR) ?? join(homedir(), '.graft'),
    hubUrl: nonEmpty(env.GRAFT_HUB_URL),
    token: nonEmpty(env.GRAFT_TOKEN),
    brokerDataDir: nonEmpty(env.GRAFT_BROKER_DATA_DIR) ?? join(homedir(), '.graft', 'broker'),
    hubEnv: { ...env },
  };
}

/** Reads the CLI's settings from this process's environment. */
export function readCliEnv(): CliEnv {
  return parseCliEnv(process.env);
}
