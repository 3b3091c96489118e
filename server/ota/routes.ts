/**
 * OTA routes (docs/ota.md):
 *
 * | route | guard | answer |
 * |---|---|---|
 * | `GET /api/ota/images` | read | `{ images: OtaImage[] }` |
 * | `POST /api/ota/images?version=V&target=T[&signature=B64]` body: the image (octet-stream); the signature may come in `X-OTA-Signature` | operator | 201 `OtaImage` (200 when the same bytes were stored already) |
 * | `DELETE /api/ota/images/:id` | operator | the deleted `OtaImage` |
 * | `POST /api/devices/:id/ota` `{ imageId }` | operator | 202 the `ota` command's record |
 * | `GET /v1/ota/images/:id` with `Authorization: Bearer <credential>` | the per-device credential | 200 / 206 the image bytes, throttled |
 */
import { open } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { HubError } from '../errors.ts';
import { bearerToken } from '../http/auth.ts';
import { sendJson } from '../http/respond.ts';
import type { Guard, Router } from '../http/router.ts';
import { deviceIdParams } from '../http/schemas.ts';
import type { Logger } from '../log/index.ts';
import type { OtaCredentials } from './credentials.ts';
import type { OtaMetrics } from './metrics.ts';
import { OTA_TARGETS, type OtaImage, type OtaStore, VERSION_RE } from './store.ts';
import type { DownloadThrottle } from './throttle.ts';

export interface OtaRoutesOptions {
  store: OtaStore;
  credentials: OtaCredentials;
  throttle: DownloadThrottle;
  metrics: OtaMetrics;
  logger: Logger;
  guard: Guard;
  readGuard: Guard;
  /** Sends the `ota` command for an image to a connected device; DEVICE_OFFLINE when it is not. */
  sendUpdate: (deviceId: string, imageId: string) => Promise<unknown>;
}

const noStore = { 'cache-control': 'no-store' };
const idParams = z.strictObject({ id: z.string().regex(/^[0-9a-f]{16}$/, 'an image id is 16 hex characters') });
const imageView = z.object({
  id: z.string(),
  version: z.string(),
  target: z.enum(OTA_TARGETS),
  size: z.number().int(),
  sha256: z.string(),
  signature: z.string(),
  uploadedAt: z.string(),
});
/** Seconds a board refused for capacity is told to wait. */
const RETRY_AFTER_SEC = 2;

export function registerOtaRoutes(router: Router, o: OtaRoutesOptions): void {
  const logger = o.logger;
  const tags = ['ota'];

  router.get('/api/ota/images', async () => ({ images: await o.store.list() }), {
    guard: o.readGuard,
    headers: noStore,
    tags,
    summary: 'Signed OTA images in the store',
    query: z.strictObject({}),
    responses: { 200: z.object({ images: z.array(imageView) }) },
  });

  router.post(
    '/api/ota/images',
    async (ctx) => {
      const { version, target } = ctx.input.query;
      const header = ctx.req.headers['x-ota-signature'];
      const signature = ctx.input.query.signature ?? (typeof header === 'string' ? header.trim() : undefined);
      try {
        const bytes = await readBody(ctx.req, o.store.maxImageBytes);
        const before = (await o.store.list()).length;
        const image = await o.store.add({ version, target, signature }, bytes);
        const stored = (await o.store.list()).length > before;
        o.metrics.uploads.inc({ outcome: stored ? 'stored' : 'duplicate' });
        logger.info(
          { imageId: image.id, version, target, size: image.size, remoteAddress: ctx.req.socket.remoteAddress },
          stored ? 'OTA image uploaded' : 'OTA image uploaded again (same bytes)',
        );
        sendJson(ctx.res, stored ? 201 : 200, image, noStore);
      } catch (err) {
        const outcome = uploadOutcome(err);
        o.metrics.uploads.inc({ outcome });
        logger.warn(
          { version, target, outcome, code: (err as HubError).code, remoteAddress: ctx.req.socket.remoteAddress },
          `OTA image refused: ${(err as Error).message}`,
        );
        throw err;
      }
    },
    {
      guard: o.guard,
      headers: noStore,
      tags,
      summary: 'Upload a signed OTA image (application/octet-stream)',
      description:
        'The signature (base64 DER ECDSA P-256 over the image) in `signature` or the `X-OTA-Signature` header. ' +
        '422 OTA_SIGNATURE_INVALID when unsigned or not verifying, 413 past OTA_MAX_IMAGE_BYTES, 409 OTA_STORE_FULL.',
      query: z.strictObject({
        version: z.string().regex(VERSION_RE, '1-32 printable characters without spaces'),
        target: z.enum(OTA_TARGETS),
        signature: z.string().max(200).optional(),
      }),
      responses: { 201: imageView, 200: imageView.describe('The same bytes were stored already') },
    },
  );

  router.delete(
    '/api/ota/images/:id',
    async (ctx) => {
      const image = await o.store.remove(ctx.input.params.id);
      logger.info({ imageId: image.id, version: image.version }, 'OTA image deleted');
      return image;
    },
    {
      guard: o.guard,
      headers: noStore,
      tags,
      summary: 'Delete an OTA image',
      params: idParams,
      query: z.strictObject({}),
    },
  );

  router.post(
    '/api/devices/:id/ota',
    async (ctx) => {
      const record = await o.sendUpdate(ctx.input.params.id, ctx.input.body.imageId);
      sendJson(ctx.res, 202, record, noStore);
    },
    {
      guard: o.guard,
      headers: noStore,
      tags,
      summary: 'Send the `ota` command for an image to one connected board',
      description:
        '409 DEVICE_OFFLINE when the board has no live session; 409 OTA_DEVICE_ON_OTHER_INSTANCE when another hub instance holds it (the message names it); 404 for an unknown image.',
      params: deviceIdParams,
      query: z.strictObject({}),
      body: z.strictObject({ imageId: z.string().regex(/^[0-9a-f]{16}$/, 'an image id is 16 hex characters') }),
    },
  );

  router.get(
    '/v1/ota/images/:id',
    async (ctx) => {
      const { id } = ctx.input.params;
      const remoteAddress = ctx.req.socket.remoteAddress;
      const credential = bearerToken(ctx.req);
      const grant = credential === null ? null : o.credentials.check(credential, id);
      if (grant === null) {
        o.metrics.refusals.inc({ reason: 'credential' });
        logger.warn({ imageId: id, remoteAddress }, 'OTA download refused: bad or expired credential');
        ctx.res.setHeader('www-authenticate', 'Bearer realm="esp32-hub-ota"');
        throw new HubError('OTA_CREDENTIAL_INVALID');
      }
      let image: OtaImage;
      try {
        image = await o.store.get(id);
      } catch (err) {
        o.metrics.refusals.inc({ reason: 'not_found' });
        throw err;
      }
      const range = parseRange(ctx.req.headers.range, image.size);
      if (range === 'unsatisfiable') {
        o.metrics.refusals.inc({ reason: 'range' });
        ctx.res.writeHead(416, { 'content-range': `bytes */${image.size}`, ...noStore });
        ctx.res.end();
        return;
      }
      const slot = o.throttle.acquire();
      if (slot === null) {
        o.metrics.refusals.inc({ reason: 'busy' });
        logger.info({ deviceId: grant.deviceId, imageId: id }, 'OTA download refused: at capacity (503 Retry-After)');
        ctx.res.setHeader('retry-after', String(RETRY_AFTER_SEC));
        throw new HubError('OTA_BUSY');
      }
      o.metrics.downloadsActive.set(o.throttle.active());
      const [start, end] = range ?? [0, image.size - 1];
      logger.info(
        { deviceId: grant.deviceId, imageId: id, from: start, to: end, remoteAddress },
        'OTA download started',
      );
      try {
        const headers = {
          'content-type': 'application/octet-stream',
          'content-length': end - start + 1,
          'accept-ranges': 'bytes',
          'x-content-type-options': 'nosniff',
          ...noStore,
          ...(range ? { 'content-range': `bytes ${start}-${end}/${image.size}` } : {}),
        };
        ctx.res.writeHead(range ? 206 : 200, headers);
        if (ctx.method === 'HEAD') {
          ctx.res.end();
          return;
        }
        const sent = await streamFile(o.store.imagePath(id), start, end, ctx.res, o.throttle, (n) =>
          o.metrics.downloadBytes.inc(n),
        );
        const complete = sent === end - start + 1;
        o.metrics.downloads.inc({ outcome: complete ? 'complete' : 'aborted' });
        logger.info(
          { deviceId: grant.deviceId, imageId: id, from: start, bytes: sent },
          complete ? 'OTA download complete' : 'OTA download aborted by the board',
        );
      } finally {
        slot.release();
        o.metrics.downloadsActive.set(o.throttle.active());
      }
    },
    {
      tags,
      summary: 'Download an OTA image (the board, with its per-device credential); Range resumes',
      description:
        '`Authorization: Bearer <credential>` from the `ota` command. 401 OTA_CREDENTIAL_INVALID, 404 unknown image, ' +
        '206 for `Range: bytes=N-`, 503 OTA_BUSY with Retry-After past OTA_MAX_CONCURRENT_DOWNLOADS.',
      params: idParams,
      responses: {
        200: { description: 'The image', contentType: 'application/octet-stream' },
        206: { description: 'The requested range', contentType: 'application/octet-stream' },
      },
    },
  );
}

function uploadOutcome(err: unknown): string {
  switch ((err as HubError).code) {
    case 'OTA_SIGNATURE_INVALID':
      return 'signature_invalid';
    case 'PAYLOAD_TOO_LARGE':
      return 'too_large';
    case 'OTA_STORE_FULL':
      return 'full';
    case 'OTA_NOT_CONFIGURED':
      return 'not_configured';
    default:
      return 'bad_request';
  }
}

/** `bytes=N-` or `bytes=N-M` → [start, end]; undefined without a Range header; one range only. */
export function parseRange(header: string | undefined, size: number): [number, number] | undefined | 'unsatisfiable' {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d{1,12})-(\d{0,12})$/.exec(header.trim());
  if (!m) throw new HubError('BAD_REQUEST', 'Range: only one range of the form bytes=N- or bytes=N-M');
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return [start, end];
}

/** Sends bytes start..end of a file, paced by the throttle and the socket; returns the bytes sent. */
async function streamFile(
  path: string,
  start: number,
  end: number,
  res: ServerResponse,
  throttle: DownloadThrottle,
  onBytes: (n: number) => void,
): Promise<number> {
  const file = await open(path, 'r');
  let pos = start;
  let closed = false;
  res.once('close', () => {
    closed = true;
  });
  try {
    const buf = Buffer.allocUnsafe(throttle.chunkBytes);
    while (pos <= end && !closed) {
      const want = Math.min(buf.length, end - pos + 1);
      await throttle.take(want);
      if (closed) break;
      const { bytesRead } = await file.read(buf, 0, want, pos);
      if (bytesRead === 0) break;
      const ok = res.write(Buffer.from(buf.subarray(0, bytesRead)));
      pos += bytesRead;
      onBytes(bytesRead);
      if (!ok && !closed)
        await new Promise<void>((r) => {
          const done = () => {
            res.off('drain', done);
            res.off('close', done);
            r();
          };
          res.on('drain', done);
          res.on('close', done);
        });
    }
    if (!closed) res.end();
    return pos - start;
  } finally {
    await file.close();
  }
}

/** Reads a raw request body up to `max` bytes (PAYLOAD_TOO_LARGE beyond, the rest discarded). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  const tooLarge = () =>
    new HubError('PAYLOAD_TOO_LARGE', `an OTA image is at most ${max} bytes (OTA_MAX_IMAGE_BYTES)`);
  if (declared > max) {
    req.resume();
    return Promise.reject(tooLarge());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.off('data', onData);
        req.resume();
        reject(tooLarge());
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
