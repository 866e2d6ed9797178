import { existsSync } from 'node:fs';
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Quotes a string for a POSIX shell, whatever characters the path holds. */
const shellQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * Writes `<binDir>/graft-agent`, a shell script that runs the agent tool with this node, so every
 * agent finds `graft-agent` on its PATH whatever node (if any) its PATH holds. Replaced atomically:
 * agents may run the old one meanwhile.
 */
export async function writeAgentToolShim(binDir: string, nodePath: string, agentMain: string): Promise<string> {
  await mkdir(binDir, { recursive: true });
  const shim = join(binDir, 'graft-agent');
  const tmp = `${shim}.${process.pid}.tmp`;
  await writeFile(tmp, `#!/bin/sh\nexec ${shellQuote(nodePath)} ${shellQuote(agentMain)} "$@"\n`, { mode: 0o755 });
  // The mode of a created file is masked by the umask; the shim must be executable regardless.
  await chmod(tmp, 0o755);
  await rename(tmp, shim);
  return shim;
}

/** The agents' environment with `binDir` first on PATH. */
export function withBinOnPath(env: Record<string, string>, binDir: string): Record<string, string> {
  const rest = env.PATH ?? '/usr/local/bin:/usr/bin:/bin';
  return { ...env, PATH: rest === '' ? binDir : `${binDir}:${rest}` };
}

/** The built `graft-agent` entry point, found like any dependency; undefined (with the reason) when it is missing or not built. */
export function findAgentTool(): { agentMain: string } | { missing: string } {
  let agentMain: string;
  try {
    agentMain = fileURLToPath(import.meta.resolve('@graft/agent/main'));
  } catch (err) {
    return { missing: err instanceof Error ? err.message : String(err) };
  }
  return existsSync(agentMain) ? { agentMain } : { missing: `${agentMain} does not exist (build @graft/agent)` };
}
