import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { logArchiveContract } from './log-archive-contract.js';
import { S3LogArchive, type S3LogArchiveOptions } from './s3-log-archive.js';

/**
 * s3rver (a file-backed S3 server on npm) in a node of its own: it builds ListObjectsV2
 * continuation tokens with DES, which Node's OpenSSL 3 offers only under --openssl-legacy-provider.
 * It stops when its stdin closes, so it cannot outlive this test process.
 */
const S3RVER_SCRIPT = `
const S3rver = require(process.env.S3RVER_MAIN);
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: process.env.S3RVER_DIR });
server.run().then((address) => process.stdout.write(JSON.stringify({ port: address.port }) + '\\n'));
process.stdin.on('end', () => server.close());
process.stdin.resume();
`;

interface S3Server {
  endpoint: string;
  stop(): Promise<void>;
}

async function startS3rver(directory: string): Promise<S3Server> {
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', S3RVER_SCRIPT], {
    env: { ...process.env, S3RVER_MAIN: createRequire(import.meta.url).resolve('s3rver'), S3RVER_DIR: directory },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = once(child, 'exit');
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.stdin.end();
    const done = await Promise.race([exited.then(() => true), delay(3_000).then(() => false)]);
    if (!done) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  const lines = createInterface({ input: child.stdout });
  const ready = (async () => {
    for await (const line of lines) return JSON.parse(line) as { port: number };
    throw new Error(`s3rver exited before it listened: ${stderr}`);
  })();
  ready.catch(() => undefined); // raced below; a late failure must not become an unhandled rejection
  const started = await Promise.race([ready, delay(15_000).then(() => null)]);
  lines.close();
  if (started === null) {
    await stop();
    throw new Error(`s3rver did not start within 15s: ${stderr}`);
  }
  return { endpoint: `http://127.0.0.1:${started.port}`, stop };
}

interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A pass-through HTTP proxy in front of the S3 server that records what the SDK actually sends. */
async function startRecordingProxy(target: string): Promise<{ endpoint: string; requests: RecordedRequest[]; close(): Promise<void> }> {
  const upstream = new URL(target);
  const requests: RecordedRequest[] = [];
  const proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) }));
    // Host is passed through unchanged, so the SigV4 signature still matches.
    const forward = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  const { port } = proxy.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    close: async () => {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}

const md5 = (data: Buffer): string => createHash('md5').update(data).digest('base64');

let dataDir: string;
let server: S3Server;
let admin: S3Client;
let buckets = 0;

const connection = (): Omit<S3LogArchiveOptions, 'bucket'> => ({
  endpoint: server.endpoint,
  region: 'us-east-1',
  accessKeyId: 'S3RVER',
  secretAccessKey: 'S3RVER',
  forcePathStyle: true,
});

/** A fresh bucket for each archive, so tests never see each other's objects. */
async function newBucket(): Promise<string> {
  const bucket = `graft-logs-${++buckets}`;
  await admin.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

async function bucketKeys(bucket: string): Promise<string[]> {
  const out = await admin.send(new ListObjectsV2Command({ Bucket: bucket }));
  return (out.Contents ?? []).map((o) => o.Key ?? '').sort();
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'graft-s3rver-'));
  server = await startS3rver(dataDir);
  admin = new S3Client({ ...connection(), credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
});

afterAll(async () => {
  admin?.destroy();
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

logArchiveContract('s3 (s3rver)', async () => {
  const archive = new S3LogArchive({ ...connection(), bucket: await newBucket() });
  return { archive, cleanup: () => archive.close() };
});

describe('S3LogArchive', () => {
  const opened: S3LogArchive[] = [];
  const open = (options: Partial<S3LogArchiveOptions> & { bucket: string }): S3LogArchive => {
    const archive = new S3LogArchive({ ...connection(), ...options });
    opened.push(archive);
    return archive;
  };

  afterEach(async () => {
    for (const archive of opened.splice(0)) await archive.close();
  });

  it('keeps archives with different prefixes in one bucket apart', async () => {
    const bucket = await newBucket();
    const a = open({ bucket, prefix: 'tenant-a/logs' });
    const b = open({ bucket, prefix: 'tenant-b/' });
    await a.put('p/x/00000001.log', Buffer.from('from a'));
    await b.put('p/x/00000001.log', Buffer.from('from b'));
    await b.put('p/y/00000001.log', Buffer.from('also b'));

    expect(await bucketKeys(bucket)).toEqual([
      'tenant-a/logs/p/x/00000001.log',
      'tenant-b/p/x/00000001.log',
      'tenant-b/p/y/00000001.log',
    ]);
    expect((await a.get('p/x/00000001.log'))?.toString()).toBe('from a');
    expect(await a.list('')).toEqual(['p/x/00000001.log']);

    await b.deletePrefix('p');
    expect(await b.list('')).toEqual([]);
    expect((await a.get('p/x/00000001.log'))?.toString()).toBe('from a');
  });

  it('lists only valid keys, but deletePrefix removes whatever lies under the prefix', async () => {
    const bucket = await newBucket();
    const archive = open({ bucket });
    await archive.put('p/a/00000001.log', Buffer.from('ok'));
    await admin.send(new PutObjectCommand({ Bucket: bucket, Key: 'p/a/not a key', Body: 'stray' }));
    await admin.send(new PutObjectCommand({ Bucket: bucket, Key: 'p/a/.hidden', Body: 'stray' }));
    expect(await archive.list('p')).toEqual(['p/a/00000001.log']);

    await archive.deletePrefix('p/a');
    expect(await bucketKeys(bucket)).toEqual([]);
  });

  it('sends Content-MD5 on puts and on DeleteObjects, which S3-compatible servers require', async () => {
    const proxy = await startRecordingProxy(server.endpoint);
    try {
      const archive = open({ bucket: await newBucket(), endpoint: proxy.endpoint });
      await archive.put('p/a/00000001.log', Buffer.from('one'));
      await archive.put('p/a/00000002.log', Buffer.from('two'));
      await archive.deletePrefix('p');
      expect(await archive.list('')).toEqual([]);

      const puts = proxy.requests.filter((r) => r.method === 'PUT');
      const deletes = proxy.requests.filter((r) => r.method === 'POST' && r.url.includes('?delete'));
      expect(puts).toHaveLength(2);
      // s3rver sometimes answers a DeleteObjects with 500 (it races itself removing emptied directories) and the SDK retries.
      expect(deletes.length).toBeGreaterThanOrEqual(1);
      for (const r of [...puts, ...deletes]) expect(r.headers['content-md5'], r.url).toBe(md5(r.body));
      // Flexible checksums only where S3 demands them: none on a plain put.
      for (const r of puts) expect(Object.keys(r.headers).filter((h) => h.startsWith('x-amz-checksum-'))).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  it('fails, rather than answering "absent", when the bucket itself is missing', async () => {
    const archive = open({ bucket: 'graft-no-such-bucket' });
    await expect(archive.get('p/a/00000001.log')).rejects.toMatchObject({ name: 'NoSuchBucket' });
    await expect(archive.list('p')).rejects.toMatchObject({ name: 'NoSuchBucket' });
    await expect(archive.put('p/a/00000001.log', Buffer.from('x'))).rejects.toMatchObject({ name: 'NoSuchBucket' });
  });
});
