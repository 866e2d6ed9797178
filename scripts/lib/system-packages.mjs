// The Debian packages the test suite drives for real: Podman (the docker runtime's engine, through
// its Docker-compatible API), bubblewrap (the bwrap runtime), git (cloning), Redis (the cluster
// adapters), and for the cluster e2e tests nginx (the load balancer), Prometheus (scraping, and
// promtool for the metrics check), iproute2 and iptables (a broker behind NAT). `npm test` installs
// the missing ones on a fresh Debian machine when it runs as root; otherwise it says what to run.
import { spawnSync } from 'node:child_process';
import { step } from './workspace.mjs';

/** Commands the tests need, and the packages that bring them (Podman as ENVIRONMENT.md sets it up). */
const NEEDED = [
  { command: 'podman', packages: ['podman', 'runc', 'uidmap', 'catatonit', 'netavark', 'aardvark-dns', 'iptables'] },
  { command: 'runc', packages: ['runc'] },
  { command: 'busybox', packages: ['busybox-static'] },
  { command: 'bwrap', packages: ['bubblewrap'] },
  { command: 'git', packages: ['git'] },
  { command: 'redis-server', packages: ['redis-server'] },
  { command: 'nginx', packages: ['nginx-light'] },
  { command: 'prometheus', packages: ['prometheus'] },
  { command: 'promtool', packages: ['prometheus'] },
  { command: 'ip', packages: ['iproute2'] },
  { command: 'iptables', packages: ['iptables'] },
];

const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;

/** Installs what is missing with apt-get (as root), or throws naming the command to run. */
export function ensureSystemPackages() {
  const missing = [...new Set(NEEDED.filter((n) => !has(n.command)).flatMap((n) => n.packages))];
  if (missing.length === 0) return;
  const install = ['install', '-y', '--no-install-recommends', ...missing];
  if (process.getuid?.() !== 0 || !has('apt-get')) {
    const e = new Error(`the tests need ${missing.join(', ')}; install them with: sudo apt-get ${install.join(' ')}`);
    e.exitCode = 1;
    throw e;
  }
  step(`installing ${missing.join(', ')} (apt-get; services are not started)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let r = spawnSync('apt-get', install, { stdio: 'inherit', env });
  if (r.status !== 0) {
    // A fresh machine may have no package lists yet.
    step('apt-get update, then installing again');
    spawnSync('apt-get', ['update'], { stdio: 'inherit', env });
    r = spawnSync('apt-get', install, { stdio: 'inherit', env });
  }
  if (r.status !== 0) {
    const e = new Error(`apt-get ${install.join(' ')} failed (exit ${r.status ?? r.signal})`);
    e.exitCode = 1;
    throw e;
  }
}
