import { connect, createServer, type Socket } from 'node:net';

/** A TCP proxy whose live connections can be dropped at will. */
export interface TcpCutter {
  port: number;
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Resets every live connection on both sides (RST, as a dropped link would be seen); returns how many. */
  cutAll(): number;
  /** Closes the listener and every connection. */
  stop(): Promise<void>;
}

/**
 * A loopback TCP proxy (node:net) to `targetHost:targetPort`, placed between a broker and the
 * balancer: `cutAll()` resets both sides of every connection, so the broker sees its tunnel drop
 * mid-stream and the hub sees the balancer's upstream connection close.
 */
export async function startTcpCutter(targetHost: string, targetPort: number): Promise<TcpCutter> {
  const pairs = new Set<[Socket, Socket]>();
  let accepted = 0;
  const server = createServer((client) => {
    accepted++;
    const upstream = connect({ host: targetHost, port: targetPort });
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const cutAll = () => {
    const live = [...pairs];
    for (const pair of live) {
      pairs.delete(pair);
      for (const s of pair) if (!s.destroyed) s.resetAndDestroy();
    }
    return live.length;
  };
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get accepted() {
      return accepted;
    },
    cutAll,
    stop: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      cutAll();
      await closed;
    },
  };
}
