import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AGENT_LIB_FILE } from './runtime/agent-runtime.js';

/**
 * Installs the self-contained `graft-agent` bundle as `<binDir>/graft-agent` (executable, run by the
 * `node` on the agent's PATH) and the library next to it, each replaced atomically since running
 * agents may be executing the old one.
 * Runtimes mount `binDir` into every sandbox and container and put it first on PATH.
 */
export async function installAgentTool(binDir: string, bundles: AgentToolBundles): Promise<string> {
  await mkdir(binDir, { recursive: true, mode: 0o755 });
  await chmod(binDir, 0o755);
  const target = join(binDir, 'graft-agent');
  await replaceFile(bundles.cli, target, 0o755);
  await replaceFile(bundles.library, join(binDir, AGENT_LIB_FILE), 0o644);
  return target;
}

async function replaceFile(from: string, to: string, mode: number): Promise<void> {
  const tmp = `${to}.${process.pid}.tmp`;
  await copyFile(from, tmp);
  // The mode of a copied file is masked by the umask; the tool must be executable regardless.
  await chmod(tmp, mode);
  await rename(tmp, to);
}

/** The two bundles of @graft/agent: the `graft-agent` CLI and the library script agents import. */
export interface AgentToolBundles {
  cli: string;
  library: string;
}

/** The built `graft-agent` bundle, found like any dependency; the reason when it is missing or not built. */
export function findAgentTool(): { bundles: AgentToolBundles } | { missing: string } {
  let bundles: AgentToolBundles;
  try {
    bundles = {
      cli: fileURLToPath(import.meta.resolve('@graft/agent/graft-agent.mjs')),
      library: fileURLToPath(import.meta.resolve('@graft/agent/graft-agent-lib.mjs')),
    };
  } catch (err) {
    return { missing: err instanceof Error ? err.message : String(err) };
  }
  const absent = [bundles.cli, bundles.library].filter((f) => !existsSync(f));
  return absent.length === 0 ? { bundles } : { missing: `${absent.join(', ')} missing (build @graft/agent)` };
}
