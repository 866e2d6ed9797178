// Builds dist/graft-agent.mjs (the CLI) and dist/graft-agent-lib.mjs (the library script agents
// import through GRAFT_AGENT_LIB): each with everything it imports in one file, so the broker can
// mount them into any container or sandbox that has a `node`, without a node_modules tree.
import { chmod } from 'node:fs/promises';
import { build } from 'esbuild';

const bundles = [
  ['../src/main.ts', '../dist/graft-agent.mjs'],
  ['../src/index.ts', '../dist/graft-agent-lib.mjs'],
];
for (const [entry, out] of bundles) {
const outfile = new URL(out, import.meta.url).pathname;
await build({
  entryPoints: [new URL(entry, import.meta.url).pathname],
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
}
