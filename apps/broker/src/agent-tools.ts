import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Installs the self-contained `graft-agent` bundle as `<binDir>/graft-agent` (executable, run by the
 * `node` on the agent's PATH), replaced atomically since running agents may be executing the old one.
 * Runtimes mount `binDir` into every sandbox and container and put it first on PATH.
 */
export async function installAgentTool(binDir: string, bundle: string): Promise<string> {
  await mkdir(binDir, { recursive: true, mode: 0o755 });
  await chmod(binDir, 0o755);
  const target = join(binDir, 'graft-agent');
  const tmp = `${target}.${process.pid}.tmp`;
  await copyFile(bundle, tmp);
  // The mode of a copied file is masked by the umask; the tool must be executable regardless.
  await chmod(tmp, 0o755);
  await rename(tmp, target);
  return target;
}

/** The built `graft-agent` bundle, found like any dependency; the reason when it is missing or not built. */
export function findAgentTool(): { bundle: string } | { missing: string } {
  let bundle: string;
  try {
    bundle = fileURLToPath(import.meta.resolve('@graft/agent/graft-agent.mjs'));
  } catch (err) {
    return { missing: err instanceof Error ? err.message : String(err) };
  }
  return existsSync(bundle) ? { bundle } : { missing: `${bundle} does not exist (build @graft/agent)` };
}
