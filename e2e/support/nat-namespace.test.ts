import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNatNamespace, type NatNamespace } from './nat-namespace.js';

// The NAT property the cluster tests rely on, checked with real sockets on both sides.
let nat: NatNamespace;
const children: ChildProcess[] = [];

beforeAll(() => {
  nat = createNatNamespace();
});

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  nat?.destroy();
});

/** Runs a node script inside the broker's namespace; resolves with its first stdout line. */
function runInBroker(script: string, ...args: string[]): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(nat.exec[0] ?? 'ip', [...nat.exec.slice(1), process.execPath, '-e', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString('utf8');
    });
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve({ child, line: out.slice(0, nl) });
    });
    child.once('exit', (code) => reject(new Error(`script in the broker namespace exited with ${code} before printing: ${err}`)));
  });
}

/** Connects from the root namespace; resolves with how it went (an error code, or `connected`). */
function probe(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const s: Socket = connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code ?? 'error');
    });
  });
}

describe('NAT namespace', () => {
  it('lets the broker namespace connect out, seen as the router, and no connection in', async () => {
    // Out: a listener on the root side sees the router's address, not the broker's.
    const peers: string[] = [];
    const server = createServer((s) => {
      peers.push(s.remoteAddress ?? '');
      s.end('hello from root\n');
    });
    await new Promise<void>((resolve) => server.listen(0, nat.rootAddress, resolve));
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      const dial = `const s = require('node:net').connect(Number(process.argv[2]), process.argv[1]); s.on('data', (d) => { process.stdout.write(d); s.end(); }); s.on('error', (e) => { console.log('error ' + e.code); });`;
      const { line } = await runInBroker(dial, nat.rootAddress, String(port));
      expect(line).toBe('hello from root');
      expect(peers).toEqual([nat.routerAddress]);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }

    // In: a listener inside the broker namespace on every address cannot be reached from the root.
    const listen = `const s = require('node:net').createServer((c) => c.end('in\\n')); s.listen(0, '0.0.0.0', () => console.log(s.address().port));`;
    const { child, line } = await runInBroker(listen);
    const inside = Number(line);
    expect(inside).toBeGreaterThan(0);
    // Inside the namespace it does answer (so the failures below are the NAT's doing).
    const local = spawnSync(nat.exec[0] ?? 'ip', [...nat.exec.slice(1), process.execPath, '-e', `require('node:net').connect(${inside}, '127.0.0.1').on('data', (d) => process.stdout.write(d))`], { encoding: 'utf8', timeout: 10_000 });
    expect(local.stdout).toBe('in\n');
    expect(await probe(nat.brokerAddress, inside, 1_500)).not.toBe('connected');
    expect(await probe(nat.routerAddress, inside, 1_500)).not.toBe('connected');
    child.kill('SIGKILL');
  });

  it('removes its namespaces and veths on destroy', () => {
    const extra = createNatNamespace();
    expect(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout).toContain(extra.brokerNs);
    extra.destroy();
    const after = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    expect(after).not.toContain(extra.brokerNs);
    expect(after).not.toContain(extra.routerNs);
    expect(spawnSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' }).stdout).not.toContain(`${extra.rootAddress}/`);
  });
});
