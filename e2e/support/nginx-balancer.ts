import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './free-port.js';

/** An nginx (Debian's package) balancing HTTP and WebSocket requests over hub replicas. */
export interface NginxBalancer {
  port: number;
  /** `http://127.0.0.1:<port>`. */
  url: string;
  pid: number;
  /** The balancer's URL on another of the addresses it listens on. */
  urlOn(address: string): string;
  /** nginx's error log so far (upstream failures show here). */
  errorLog(): string;
  /** Stops nginx by its PID and removes its directory. */
  stop(): Promise<void>;
}

/** Options of {@link startNginxBalancer}. */
export interface NginxBalancerOptions {
  /** Replicas as `http://host:port` URLs. */
  upstreams: readonly string[];
  /** Addresses to listen on, all on one ephemeral port (default 127.0.0.1 only). */
  listen?: readonly string[];
}

/** The load-balancer config we ship: the cluster tests run exactly this, with their own addresses. */
const SHIPPED_CONF = join(dirname(fileURLToPath(import.meta.url)), '../../deploy/nginx/graft.conf');

/**
 * `deploy/nginx/graft.conf` with its upstream `server` lines replaced by `upstreams` (`host:port`)
 * and its `listen` lines by `listens` (`address:port`). Throws when either pattern is gone from the
 * shipped file, so a change there cannot silently stop being tested.
 */
export function renderGraftNginxConf(upstreams: readonly string[], listens: readonly string[]): string {
  const conf = readFileSync(SHIPPED_CONF, 'utf8');
  const server = /^(\s*)server\s+[a-z0-9.-]+:\d+([^;]*);\n/gm;
  const first = server.exec(conf);
  if (!first) throw new Error(`${SHIPPED_CONF}: no upstream server lines to replace`);
  const [, indent = '', options = ''] = first;
  let placed = false;
  const withUpstreams = conf.replace(server, () => {
    if (placed) return '';
    placed = true;
    return upstreams.map((u) => `${indent}server ${u}${options};\n`).join('');
  });
  const listen = /^(\s*)listen\s+(?:80|\[::\]:80);\n/gm;
  if (!listen.test(withUpstreams)) throw new Error(`${SHIPPED_CONF}: no listen lines to replace`);
  placed = false;
  return withUpstreams.replace(listen, (_all, ind: string) => {
    if (placed) return '';
    placed = true;
    return listens.map((l) => `${ind}listen ${l};\n`).join('');
  });
}

/** A main nginx.conf for a private prefix (pid, logs and temp dirs under `dir`) that includes `include`. */
function mainConf(dir: string, include: string): string {
  return `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log notice;
events { worker_connections 2048; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  include ${include};
}
`;
}

/**
 * Runs the shipped `deploy/nginx/graft.conf` (WebSocket upgrades passed through, no buffering,
 * hour-long read timeouts for tunnels and followers, the next replica tried on a connection error
 * or timeout) over the given replicas, and runs `nginx -p <tmp> -c <conf> -g 'daemon off;'` on an ephemeral
 * port; resolves once it answers HTTP. Requests that fail at the upstream after being sent (a POST
 * to a replica killed mid-request) are not retried by nginx: the client sees a 502.
 */
export async function startNginxBalancer(options: NginxBalancerOptions): Promise<NginxBalancer> {
  if (spawnSync('nginx', ['-v'], { stdio: 'ignore' }).error) throw new Error('nginx is required by the cluster tests; install it with: apt-get install -y nginx');
  const dir = mkdtempSync(join(tmpdir(), 'graft-e2e-nginx-'));
  // Workers run as nobody when nginx starts as root: they must reach the temp dirs.
  chmodSync(dir, 0o755);
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  const upstreams = options.upstreams.map((u) => new URL(u).host);
  writeFileSync(join(dir, 'graft.conf'), renderGraftNginxConf(upstreams, (options.listen ?? ['127.0.0.1']).map((a) => `${a}:${port}`)));
  writeFileSync(conf, mainConf(dir, join(dir, 'graft.conf')));
  const child: ChildProcess = spawn('nginx', ['-p', dir, '-c', conf, '-e', join(dir, 'error.log'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const errorLog = () => {
    try {
      return readFileSync(join(dir, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  };
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      // SIGTERM: fast shutdown, workers included.
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const why = `${stderr}${errorLog()}`;
      await stop();
      throw new Error(`nginx exited before answering: ${why}`);
    }
    // Any answer (a 502 while no replica is up) means nginx listens.
    const answered = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) }).then(
      () => true,
      () => false,
    );
    if (answered) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`nginx did not answer on ${url} within 10 s: ${stderr}${errorLog()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, url, pid: child.pid ?? -1, urlOn: (address) => `http://${address}:${port}`, errorLog, stop };
}
