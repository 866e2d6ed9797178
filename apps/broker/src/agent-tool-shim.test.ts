import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { withBinOnPath, writeAgentToolShim } from './agent-tool-shim.js';

const run = promisify(execFile);
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'graft-shim-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

it('puts an executable graft-agent on the agents\' PATH that runs the agent main with this node', async () => {
  // A path a naive shell script would break on.
  const odd = join(dir, "it's a $dir");
  mkdirSync(odd);
  const main = join(odd, 'main.js');
  writeFileSync(main, 'console.log(JSON.stringify(process.argv.slice(2)));\n');
  const binDir = join(dir, 'bin');
  const shim = await writeAgentToolShim(binDir, process.execPath, main);
  expect(shim).toBe(join(binDir, 'graft-agent'));
  expect(statSync(shim).mode & 0o777).toBe(0o755);
  const env = withBinOnPath({ PATH: '/usr/bin:/bin', HOME: dir }, binDir);
  expect(env.PATH).toBe(`${binDir}:/usr/bin:/bin`);
  const { stdout } = await run('/bin/sh', ['-c', 'graft-agent status thinking "reading code"'], { env });
  expect(JSON.parse(stdout)).toEqual(['status', 'thinking', 'reading code']);
  // Rewriting it at the next start replaces it in place.
  await writeAgentToolShim(binDir, process.execPath, main);
  expect(JSON.parse((await run('/bin/sh', ['-c', 'graft-agent x'], { env })).stdout)).toEqual(['x']);
});
