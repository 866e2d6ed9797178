import { spawnSync } from 'node:child_process';

/** A broker host behind a NAT router: two network namespaces of this test process, joined to the root one. */
export interface NatNamespace {
  /** The root namespace's address on the router's WAN link: what the broker dials (bind listeners here). */
  rootAddress: string;
  /** The router's WAN address: the only source address the root namespace ever sees from the broker. */
  routerAddress: string;
  /** The broker's address on its LAN (no connection from the root namespace gets through to it). */
  brokerAddress: string;
  routerNs: string;
  brokerNs: string;
  /** argv prefix that runs a command inside the broker's namespace. */
  exec: string[];
  /** Deletes both namespaces (and with them every veth of this NAT); safe to call twice. */
  destroy(): void;
}

const NAME = /^gnat(\d+)x(\d+)[rb]$/;
let created = 0;

function ip(args: string[]): string {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.error) throw new Error(`ip ${args.join(' ')}: ${r.error.message} (install iproute2)`);
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

function inNs(ns: string, argv: string[]): void {
  ip(['netns', 'exec', ns, ...argv]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Namespaces of earlier test processes that died before their teardown. */
function removeStale(): void {
  for (const line of ip(['netns', 'list']).split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = NAME.exec(name);
    if (m && !alive(Number(m[1]))) spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  }
}

/**
 * A third octet whose 10.201.X.0/30 (WAN) and 10.202.X.0/30 (LAN) nothing in the root namespace
 * uses, starting from this process's pid so that parallel test files pick different ones.
 */
function freeOctet(): number {
  const used = `${ip(['-4', '-o', 'addr', 'show'])}\n${ip(['-4', 'route', 'show', 'table', 'all'])}`;
  for (let i = 0; i < 250; i++) {
    const x = (process.pid + created + i) % 250;
    if (!used.includes(`10.201.${x}.`) && !used.includes(`10.202.${x}.`)) return x;
  }
  throw new Error('no free 10.201.X.0/30 subnet for a NAT namespace');
}

/**
 * Creates router and broker namespaces (root ⇄ router over a WAN veth, router ⇄ broker over a LAN
 * veth): the router forwards and masquerades the broker's connections to the root namespace's WAN
 * address and drops every connection towards the broker, so the broker reaches the hub and the hub
 * cannot reach the broker. Forwarding is limited to the root's WAN address, so nothing the broker
 * sends can leave the machine through the root namespace (which forwards). The root namespace gets
 * a route to the LAN through the router, so probes towards the broker end at the router's DROP
 * rather than on the host's default route. Stale namespaces of dead test processes are removed
 * first; a failure halfway deletes what was made.
 */
export function createNatNamespace(): NatNamespace {
  removeStale();
  const seq = created++;
  const x = freeOctet();
  const routerNs = `gnat${process.pid}x${seq}r`;
  const brokerNs = `gnat${process.pid}x${seq}b`;
  const rootVeth = `gv${process.pid}x${seq}`;
  const rootAddress = `10.201.${x}.1`;
  const routerAddress = `10.201.${x}.2`;
  const routerLan = `10.202.${x}.1`;
  const brokerAddress = `10.202.${x}.2`;
  let destroyed = false;
  const destroy = () => {
    if (destroyed) return;
    destroyed = true;
    // Deleting the router's namespace deletes its ends of both veths, and so their peers.
    for (const ns of [brokerNs, routerNs]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', rootVeth], { stdio: 'ignore' });
  };
  try {
    ip(['netns', 'add', routerNs]);
    ip(['netns', 'add', brokerNs]);
    for (const ns of [routerNs, brokerNs]) ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    // WAN: root ⇄ router.
    ip(['link', 'add', rootVeth, 'type', 'veth', 'peer', 'name', 'wan0', 'netns', routerNs]);
    ip(['addr', 'add', `${rootAddress}/30`, 'dev', rootVeth]);
    ip(['link', 'set', rootVeth, 'up']);
    ip(['-n', routerNs, 'addr', 'add', `${routerAddress}/30`, 'dev', 'wan0']);
    ip(['-n', routerNs, 'link', 'set', 'wan0', 'up']);
    ip(['-n', routerNs, 'route', 'add', 'default', 'via', rootAddress]);
    // LAN: router ⇄ broker.
    ip(['-n', routerNs, 'link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', brokerNs]);
    ip(['-n', routerNs, 'addr', 'add', `${routerLan}/30`, 'dev', 'lan0']);
    ip(['-n', routerNs, 'link', 'set', 'lan0', 'up']);
    ip(['-n', brokerNs, 'addr', 'add', `${brokerAddress}/30`, 'dev', 'eth0']);
    ip(['-n', brokerNs, 'link', 'set', 'eth0', 'up']);
    ip(['-n', brokerNs, 'route', 'add', 'default', 'via', routerLan]);
    // The root namespace knows the way to the LAN: through the router, which refuses it.
    ip(['route', 'add', `10.202.${x}.0/30`, 'via', routerAddress, 'dev', rootVeth]);
    // The router: forwards, masquerades outgoing, lets only replies come back in.
    inNs(routerNs, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    inNs(routerNs, ['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan0', '-j', 'MASQUERADE']);
    inNs(routerNs, ['iptables', '-P', 'FORWARD', 'DROP']);
    inNs(routerNs, ['iptables', '-A', 'FORWARD', '-i', 'lan0', '-o', 'wan0', '-d', rootAddress, '-j', 'ACCEPT']);
    inNs(routerNs, ['iptables', '-A', 'FORWARD', '-i', 'wan0', '-o', 'lan0', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']);
  } catch (err) {
    destroy();
    throw err;
  }
  return { rootAddress, routerAddress, brokerAddress, routerNs, brokerNs, exec: ['ip', 'netns', 'exec', brokerNs], destroy };
}
