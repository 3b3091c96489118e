/**
 * Firmware images for the "Add a board" page: the operator uploads a merged image (bootloader,
 * partitions and app in one file, e.g. PlatformIO's `firmware.factory.bin` or `esptool.py merge_bin`
 * output) to `<dataDir>/firmware/<name>/`, and the hub serves it with an ESP Web Tools manifest
 * (`name`, `version`, `new_install_prompt_erase`, `builds[{chipFamily, parts[{path, offset}]}]`, the
 * `Manifest` type of esp-web-tools' `dist/const.d.ts`) so the page's install button can flash it over
 * Web Serial. Bounded: at most {@link MAX_FIRMWARE_IMAGES} images of {@link MAX_FIRMWARE_BYTES} each.
 *
 * | route | guard | answer |
 * |---|---|---|
 * | `GET /api/firmware` | read | `{ images: FirmwareImage[] }` |
 * | `PUT /api/firmware/:name?version=V&chipFamily=ESP32[&offset=0]` body: the image (octet-stream) | operator | 201 `FirmwareImage` |
 * | `DELETE /api/firmware/:name` | operator | `{ name }` |
 * | `GET /firmware/:name/manifest.json` | read | the ESP Web Tools manifest |
 * | `GET /firmware/:name/image.bin` | read | the image |
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { z } from 'zod';
import { HubError } from '../errors.ts';
import { sendError, sendJson } from '../http/respond.ts';
import type { Guard, Router } from '../http/router.ts';
import type { Logger } from '../log/index.ts';

export const MAX_FIRMWARE_BYTES = 8 * 1024 * 1024;
export const MAX_FIRMWARE_IMAGES = 16;
export const FIRMWARE_DIR = 'firmware';

/** The chip families ESP Web Tools knows (its `Build['chipFamily']`). */
export const CHIP_FAMILIES = [
  'ESP32',
  'ESP32-C2',
  'ESP32-C3',
  'ESP32-C5',
  'ESP32-C6',
  'ESP32-C61',
  'ESP32-H2',
  'ESP32-P4',
  'ESP32-S2',
  'ESP32-S3',
  'ESP8266',
] as const;

export interface FirmwareImage {
  name: string;
  version: string;
  chipFamily: (typeof CHIP_FAMILIES)[number];
  offset: number;
  size: number;
  sha256: string;
  uploadedAt: string;
  manifestUrl: string;
}

/** The ESP Web Tools manifest of one image. */
export interface EspWebToolsManifest {
  name: string;
  version: string;
  new_install_prompt_erase: boolean;
  builds: { chipFamily: FirmwareImage['chipFamily']; parts: { path: string; offset: number }[] }[];
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,47}$/;
const nameParams = z.strictObject({ name: z.string().regex(NAME, 'use 1-48 of a-z 0-9 . _ - (lowercase)') });

export function manifestOf(image: FirmwareImage): EspWebToolsManifest {
  return {
    name: image.name,
    version: image.version,
    // A board that had other firmware keeps its NVS otherwise; ESP Web Tools asks the operator.
    new_install_prompt_erase: true,
    // Relative to the manifest's URL (ESP Web Tools resolves parts against it).
    builds: [{ chipFamily: image.chipFamily, parts: [{ path: 'image.bin', offset: image.offset }] }],
  };
}

export interface FirmwareRoutesOptions {
  dataDir: string;
  guard: Guard;
  readGuard: Guard;
  logger: Logger;
}

/** The uploaded images in `<dataDir>/firmware/`, shared by the routes and the `hub firmware` CLI. */
export interface FirmwareStore {
  list(): Promise<FirmwareImage[]>;
  /** NOT_FOUND for an unknown name. */
  get(name: string): Promise<FirmwareImage>;
  /** Stores (or replaces) an image; BAD_REQUEST past the count bound, an empty image or a bad field. */
  add(
    name: string,
    meta: Pick<FirmwareImage, 'version' | 'chipFamily' | 'offset'>,
    bytes: Buffer,
  ): Promise<FirmwareImage>;
  remove(name: string): Promise<void>;
  imagePath(name: string): string;
}

export function openFirmwareStore(dataDir: string): FirmwareStore {
  const root = join(dataDir, FIRMWARE_DIR);
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const get = async (name: string): Promise<FirmwareImage> => {
    if (!NAME.test(name)) throw new HubError('NOT_FOUND', `no firmware image ${name}`);
    try {
      return JSON.parse(await readFile(join(root, name, 'meta.json'), 'utf8')) as FirmwareImage;
    } catch {
      throw new HubError('NOT_FOUND', `no firmware image ${name}`);
    }
  };
  const list = async (): Promise<FirmwareImage[]> => {
    const names = (await readdir(root, { withFileTypes: true })).filter((d) => d.isDirectory() && NAME.test(d.name));
    const images: FirmwareImage[] = [];
    for (const d of names) {
      try {
        images.push(await get(d.name));
      } catch {
        // An upload in progress or a damaged directory: not listed.
      }
    }
    return images.sort((a, b) => (a.uploadedAt < b.uploadedAt ? 1 : -1));
  };
  return {
    list,
    get,
    async add(name, meta, bytes) {
      if (!NAME.test(name)) throw new HubError('BAD_REQUEST', 'an image name is 1-48 of a-z 0-9 . _ - (lowercase)');
      if (!(CHIP_FAMILIES as readonly string[]).includes(meta.chipFamily)) {
        throw new HubError('BAD_REQUEST', `chipFamily must be one of ${CHIP_FAMILIES.join(', ')}`);
      }
      if (!/^[\x20-\x7e]{1,64}$/.test(meta.version))
        throw new HubError('BAD_REQUEST', 'version: 1-64 printable characters');
      if (bytes.length === 0) throw new HubError('BAD_REQUEST', 'the image is empty');
      if (bytes.length > MAX_FIRMWARE_BYTES) {
        throw new HubError('PAYLOAD_TOO_LARGE', `an image is at most ${MAX_FIRMWARE_BYTES} bytes`);
      }
      const existing = await list();
      if (!existing.some((i) => i.name === name) && existing.length >= MAX_FIRMWARE_IMAGES) {
        throw new HubError('BAD_REQUEST', `at most ${MAX_FIRMWARE_IMAGES} images are kept: delete one first`);
      }
      const dir = join(root, name);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const image: FirmwareImage = {
        name,
        version: meta.version,
        chipFamily: meta.chipFamily,
        offset: meta.offset,
        size: bytes.length,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        uploadedAt: new Date().toISOString(),
        manifestUrl: `/firmware/${name}/manifest.json`,
      };
      await writeAtomic(join(dir, 'image.bin'), bytes);
      await writeAtomic(join(dir, 'meta.json'), Buffer.from(`${JSON.stringify(image, null, 2)}\n`));
      return image;
    },
    async remove(name) {
      await get(name);
      await rm(join(root, name), { recursive: true, force: true });
    },
    imagePath: (name) => join(root, name, 'image.bin'),
  };
}

export function registerFirmwareRoutes(router: Router, o: FirmwareRoutesOptions): void {
  const store = openFirmwareStore(o.dataDir);
  const logger = o.logger.child({ component: 'firmware' });
  const noStore = { 'cache-control': 'no-store' };
  const load = store.get;
  const list = store.list;

  router.get('/api/firmware', async () => ({ images: await list() }), {
    guard: o.readGuard,
    headers: noStore,
    tags: ['enrollment'],
    summary: 'Firmware images uploaded for the Add a board page',
    query: z.strictObject({}),
  });

  router.put(
    '/api/firmware/:name',
    async (ctx) => {
      const { name } = ctx.input.params;
      const { version, chipFamily, offset } = ctx.input.query;
      const { bytes } = await readImage(ctx.req);
      const image = await store.add(name, { version, chipFamily, offset }, bytes);
      logger.info(
        { name, version, chipFamily, size: bytes.length, remoteAddress: ctx.req.socket.remoteAddress },
        'firmware image uploaded',
      );
      sendJson(ctx.res, 201, image, noStore);
    },
    {
      guard: o.guard,
      headers: noStore,
      tags: ['enrollment'],
      params: nameParams,
      query: z.strictObject({
        version: z.string().regex(/^[\x20-\x7e]{1,64}$/, '1-64 printable characters'),
        chipFamily: z.enum(CHIP_FAMILIES),
        offset: z.coerce.number().int().min(0).max(0x1000000).default(0),
      }),
      summary: `Upload a merged firmware image (at most ${MAX_FIRMWARE_BYTES} bytes)`,
    },
  );

  router.delete(
    '/api/firmware/:name',
    async (ctx) => {
      const { name } = ctx.input.params;
      await store.remove(name);
      logger.info({ name, remoteAddress: ctx.req.socket.remoteAddress }, 'firmware image deleted');
      return { name };
    },
    {
      guard: o.guard,
      headers: noStore,
      tags: ['enrollment'],
      params: nameParams,
      query: z.strictObject({}),
      summary: 'Delete a firmware image',
    },
  );

  router.get('/firmware/:name/manifest.json', async (ctx) => manifestOf(await load(ctx.input.params.name)), {
    guard: o.readGuard,
    headers: noStore,
    tags: ['enrollment'],
    params: nameParams,
    summary: 'The ESP Web Tools manifest of an image',
  });

  router.get(
    '/firmware/:name/image.bin',
    async (ctx) => {
      const { name } = ctx.input.params;
      await load(name);
      let body: Buffer;
      try {
        body = await readFile(store.imagePath(name));
      } catch {
        return sendError(ctx.res, new HubError('NOT_FOUND', `no firmware image ${name}`));
      }
      ctx.res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': body.length,
        'x-content-type-options': 'nosniff',
        ...noStore,
      });
      ctx.res.end(ctx.method === 'HEAD' ? undefined : body);
    },
    { guard: o.readGuard, headers: noStore, tags: ['enrollment'], params: nameParams, summary: 'A firmware image' },
  );
}

/** Reads the request body up to MAX_FIRMWARE_BYTES (PAYLOAD_TOO_LARGE beyond). */
function readImage(req: IncomingMessage): Promise<{ bytes: Buffer; sha256: string }> {
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (declared > MAX_FIRMWARE_BYTES) {
    req.resume(); // discard the body, so the client reads the 413 rather than a reset
    return Promise.reject(new HubError('PAYLOAD_TOO_LARGE', `an image is at most ${MAX_FIRMWARE_BYTES} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const hash = createHash('sha256');
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_FIRMWARE_BYTES) {
        req.removeAllListeners('data');
        req.resume();
        reject(new HubError('PAYLOAD_TOO_LARGE', `an image is at most ${MAX_FIRMWARE_BYTES} bytes`));
        return;
      }
      chunks.push(c);
      hash.update(c);
    });
    req.on('end', () => resolve({ bytes: Buffer.concat(chunks), sha256: hash.digest('hex') }));
    req.on('error', reject);
  });
}

async function writeAtomic(file: string, data: Buffer): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  const h = await open(tmp, 'wx', 0o600);
  try {
    await h.writeFile(data);
    await h.sync();
  } finally {
    await h.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await stat(file);
}
