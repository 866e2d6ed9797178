import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { findAgentTool, installAgentTool } from './agent-tools.js';

const run = promisify(execFile);
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'graft-tools-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

it('installs an executable graft-agent that runs with the node on PATH, replacing an older one', async () => {
  const odd = join(dir, "it's a $dir");
  mkdirSync(odd);
  const bundle = join(odd, 'graft-agent.mjs');
  const library = join(odd, 'graft-agent-lib.mjs');
  writeFileSync(bundle, '#!/usr/bin/env node\nconsole.log(JSON.stringify(["v1", ...process.argv.slice(2)]));\n');
  writeFileSync(library, 'export const version = 1;\n');
  const binDir = join(dir, 'bin');
  const tool = await installAgentTool(binDir, { cli: bundle, library });
  expect(readFileSync(join(binDir, 'graft-agent-lib.mjs'), 'utf8')).toBe('export const version = 1;\n');
  expect(tool).toBe(join(binDir, 'graft-agent'));
  expect(statSync(tool).mode & 0o777).toBe(0o755);
  const env = { PATH: `${binDir}:/usr/local/bin:/usr/bin:/bin` };
  expect(JSON.parse((await run('/bin/sh', ['-c', 'graft-agent status thinking "reading code"'], { env })).stdout)).toEqual(['v1', 'status', 'thinking', 'reading code']);
  writeFileSync(bundle, '#!/usr/bin/env node\nconsole.log(JSON.stringify(["v2", ...process.argv.slice(2)]));\n');
  await installAgentTool(binDir, { cli: bundle, library });
  expect(JSON.parse((await run('/bin/sh', ['-c', 'graft-agent x'], { env })).stdout)).toEqual(['v2', 'x']);
});

it('finds the built bundles of @graft/agent, which work on their own (no node_modules next to them)', async () => {
  const found = findAgentTool();
  if (!('bundles' in found)) throw new Error(`graft-agent bundles not found: ${found.missing}`);
  const tool = await installAgentTool(join(dir, 'bin'), found.bundles);
  const { stdout } = await run(tool, ['--help'], { cwd: dir, env: { PATH: '/usr/local/bin:/usr/bin:/bin' } });
  expect(stdout).toContain('Usage: graft-agent');
  const probe = "const lib = await import(process.argv[1]); console.log(typeof lib.AgentClient.fromEnv, typeof lib.waitForMessages);";
  const lib = await run(process.execPath, ['--input-type=module', '-e', probe, join(dir, 'bin', 'graft-agent-lib.mjs')], { cwd: dir });
  expect(lib.stdout.trim()).toBe('function function');
});
