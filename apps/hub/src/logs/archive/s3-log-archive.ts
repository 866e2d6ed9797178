import { createHash } from 'node:crypto';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { GraftError } from '@graft/protocol';
import type { LogArchive } from './log-archive.js';
import { assertLogArchiveKey, isLogArchiveKey, normalizeLogArchivePrefix } from './log-archive-key.js';

/** How to reach the bucket; any S3-compatible endpoint works (MinIO, Ceph, R2, …). */
export interface S3LogArchiveOptions {
  /** e.g. `http://127.0.0.1:9000`; omit for AWS S3 itself. */
  endpoint?: string;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** `http://host/bucket/key` instead of `http://bucket.host/key`; most self-hosted servers need it. */
  forcePathStyle: boolean;
  /** Keeps the archive under `<prefix>/` in a shared bucket. */
  prefix?: string;
}

// DeleteObjects takes at most this many keys per request.
const DELETE_BATCH = 1000;

function md5Base64(body: string | Uint8Array): string {
  return createHash('md5').update(body).digest('base64');
}

interface SerializedRequest {
  headers: Record<string, string>;
  body: string | Uint8Array;
}

function isSerializedRequest(request: unknown): request is SerializedRequest {
  if (typeof request !== 'object' || request === null) return false;
  const { headers, body } = request as { headers?: unknown; body?: unknown };
  return typeof headers === 'object' && headers !== null && (typeof body === 'string' || body instanceof Uint8Array);
}

/**
 * S3 requires Content-MD5 on DeleteObjects; SDK v3 now sends a CRC32 checksum there instead, which
 * AWS accepts but several S3-compatible servers refuse. Sending both suits everyone.
 */
function withContentMd5(command: DeleteObjectsCommand): DeleteObjectsCommand {
  command.middlewareStack.add(
    (next) => async (args) => {
      if (isSerializedRequest(args.request)) args.request.headers['content-md5'] = md5Base64(args.request.body);
      return next(args);
    },
    { step: 'build', name: 'graftDeleteObjectsContentMd5' },
  );
  return command;
}

/**
 * A LogArchive in an S3 bucket (AWS SDK v3). Keys map to `<prefix>/<key>`. Checksums are sent and
 * validated only where the S3 API requires them, plus Content-MD5 on every put (verified by the
 * server), which is what S3-compatible servers reliably understand.
 */
export class S3LogArchive implements LogArchive {
  readonly name = 's3';
  readonly #client: S3Client;
  readonly #bucket: string;
  /** `''` or `<prefix>/`. */
  readonly #root: string;

  constructor(options: S3LogArchiveOptions) {
    const prefix = normalizeLogArchivePrefix(options.prefix ?? '', { allowEmpty: true });
    this.#root = prefix === '' ? '' : `${prefix}/`;
    this.#bucket = options.bucket;
    this.#client = new S3Client({
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  async put(key: string, data: Buffer): Promise<void> {
    assertLogArchiveKey(key);
    await this.#client.send(
      new PutObjectCommand({
        Bucket: this.#bucket,
        Key: this.#root + key,
        Body: data,
        ContentLength: data.length,
        ContentMD5: md5Base64(data),
        ContentType: 'application/octet-stream',
      }),
    );
  }

  async get(key: string): Promise<Buffer | null> {
    assertLogArchiveKey(key);
    try {
      const out = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: this.#root + key }));
      if (out.Body === undefined) return Buffer.alloc(0);
      const bytes = await out.Body.transformToByteArray();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (err) {
      // Only a missing key is "absent": a missing bucket or a 404 from a misrouted endpoint must fail loudly.
      if (err instanceof S3ServiceException && err.name === 'NoSuchKey') return null;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    const normalized = normalizeLogArchivePrefix(prefix, { allowEmpty: true });
    const objectKeys = await this.#listObjectKeys(normalized === '' ? this.#root : `${this.#root}${normalized}/`);
    const keys: string[] = [];
    for (const objectKey of objectKeys) {
      const key = objectKey.slice(this.#root.length);
      // Objects put into the bucket by other means may not be valid keys; get() could not read them.
      if (isLogArchiveKey(key)) keys.push(key);
    }
    // S3 lists in UTF-8 byte order, which for these ASCII keys is code-unit order; not every server does.
    return keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  async deletePrefix(prefix: string): Promise<void> {
    const normalized = normalizeLogArchivePrefix(prefix, { allowEmpty: false });
    const objectKeys = await this.#listObjectKeys(`${this.#root}${normalized}/`);
    for (let i = 0; i < objectKeys.length; i += DELETE_BATCH) {
      const batch = objectKeys.slice(i, i + DELETE_BATCH);
      const out = await this.#client.send(
        withContentMd5(
          new DeleteObjectsCommand({
            Bucket: this.#bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        ),
      );
      // Deleting a key that is already gone is not an error in S3, so anything reported here is real.
      if (out.Errors !== undefined && out.Errors.length > 0) {
        throw new GraftError('unavailable', 'log archive could not delete some objects', {
          bucket: this.#bucket,
          failed: out.Errors.length,
          first: out.Errors.slice(0, 5).map((e) => ({ key: e.Key, code: e.Code })),
        });
      }
    }
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  /** Every object key (bucket-relative, unfiltered) under `s3Prefix`, following continuation tokens. */
  async #listObjectKeys(s3Prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.#bucket,
          ...(s3Prefix === '' ? {} : { Prefix: s3Prefix }),
          ...(token === undefined ? {} : { ContinuationToken: token }),
        }),
      );
      for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key);
      if (page.IsTruncated === true && !page.NextContinuationToken) {
        throw new GraftError('unavailable', 'log archive listing was truncated without a continuation token', {
          bucket: this.#bucket,
        });
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return keys;
  }
}
