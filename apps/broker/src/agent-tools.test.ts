import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
  writeFileSync(bundle, '#!/usr/bin/env node\nconsole.log(JSON.stringify(["v1", ...process.argv.slice(2)]));\n');
  const binDir = join(dir, 'bin');
  const tool = await installAgentTool(binDir, bundle);
  expect(tool).toBe(join(binDir, 'graft-agent'));
  expect(statSync(tool).mode & 0o777).toBe(0o755);
  const env = { PATH: `${binDir}:/usr/local/bin:/usr/bin:/bin` };
  expect(JSON.parse((await run('/bin/sh', ['-c', 'graft-agent status thinking "reading code"'], { env })).stdout)).toEqual(['v1', 'status', 'thinking', 'reading code']);
  writeFileSync(bundle, '#!/usr/bin/env node\nconsole.log(JSON.stringify(["v2", ...process.argv.slice(2)]));\n');
  await installAgentTool(binDir, bundle);
  expect(JSON.parse((await run('/bin/sh', ['-c', 'graft-agent x'], { env })).stdout)).toEqual(['v2', 'x']);
});

it('finds the built bundle of @graft/agent, which answers --help on its own (no node_modules next to it)', async () => {
  const found = findAgentTool();
  if (!('bundle' in found)) throw new Error(`graft-agent bundle not found: ${found.missing}`);
  const tool = await installAgentTool(join(dir, 'bin'), found.bundle);
  const { stdout } = await run(tool, ['--help'], { cwd: dir, env: { PATH: '/usr/local/bin:/usr/bin:/bin' } });
  expect(stdout).toContain('Usage: graft-agent');
});
