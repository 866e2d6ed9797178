import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type Socket } from 'node:net';

/** A loopback port in the root namespace that leads to a port inside another network namespace. */
export interface NetnsPortForward {
  port: number;
  /** `127.0.0.1:<port>`, as a scrape target. */
  address: string;
  /** Closes the listener and kills every bridge process by its PID. */
  stop(): Promise<void>;
}

/** Runs inside the namespace: one TCP connection to argv[1]:argv[2], joined to stdin/stdout. */
const BRIDGE = `const s = require('node:net').connect(Number(process.argv[2]), process.argv[1]);
s.on('connect', () => { process.stdin.pipe(s); s.pipe(process.stdout); });
process.stdin.on('end', () => s.end());
s.on('close', () => process.exit(0));
s.on('error', () => process.exit(1));`;

/**
 * Forwards a root-namespace loopback port to `host:port` inside a namespace, as `kubectl
 * port-forward` does: each connection is carried by a process started in the namespace with `exec`
 * (`ip netns exec <ns>`), over its stdin/stdout, not over the network, so a NAT that refuses every
 * inbound connection stays intact. Prometheus scrapes the NAT'd broker's local API this way.
 */
export async function forwardIntoNamespace(exec: readonly string[], port: number, host = '127.0.0.1'): Promise<NetnsPortForward> {
  const bridges = new Set<ChildProcess>();
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    const child = spawn(exec[0] ?? 'ip', [...exec.slice(1), process.execPath, '-e', BRIDGE, host, String(port)], { stdio: ['pipe', 'pipe', 'ignore'] });
    bridges.add(child);
    socket.pipe(child.stdin as NodeJS.WritableStream);
    child.stdout?.pipe(socket);
    child.stdin?.on('error', () => socket.destroy());
    socket.on('error', () => child.kill('SIGKILL'));
    socket.on('close', () => {
      sockets.delete(socket);
      child.kill('SIGKILL');
    });
    child.once('exit', () => {
      bridges.delete(child);
      socket.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  const local = typeof address === 'object' && address ? address.port : 0;
  return {
    port: local,
    address: `127.0.0.1:${local}`,
    stop: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      const exits = [...bridges].map((c) => new Promise<void>((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve() : c.once('exit', () => resolve()))));
      for (const c of bridges) c.kill('SIGKILL');
      await Promise.all([closed, ...exits]);
    },
  };
}
