// Builds dist/graft-agent.mjs: graft-agent and everything it imports in one file, so the broker can
// mount it into any container or sandbox that has a `node`, without a node_modules tree.
import { chmod } from 'node:fs/promises';
import { build } from 'esbuild';

const outfile = new URL('../dist/graft-agent.mjs', import.meta.url).pathname;
await build({
  entryPoints: [new URL('../src/main.ts', import.meta.url).pathname],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  conditions: ['source'],
  legalComments: 'none',
  // Bundled CommonJS dependencies call require() for Node builtins; ESM has none of its own.
  banner: { js: "import { createRequire as __graftCreateRequire } from 'node:module'; const require = __graftCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
await chmod(outfile, 0o755);
