/**
 * The OTA image store (docs/ota.md): signed application images in `<dataDir>/ota/images/`, one
 * `<id>.bin` and its `<id>.json` metadata each. Bounded (OTA_MAX_IMAGES of OTA_MAX_IMAGE_BYTES);
 * every image is checked against the operator's public key at upload and refused when unsigned or
 * when the signature does not verify (OTA_SIGNATURE_INVALID). Shared by the hub's routes and the
 * `npm run hub -- ota` CLI: both read the directory per call, so a running hub sees a CLI upload.
 */
import { createHash, type KeyObject, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HubError } from '../errors.ts';
import { writeTextAtomic } from '../registry/store.ts';
import { verifyImage } from './signing.ts';

export const OTA_TARGETS = ['esp32', 'esp32-c3'] as const;
export type OtaTarget = (typeof OTA_TARGETS)[number];

export interface OtaImage {
  /** 16 hex characters: the start of the image's SHA-256 (the same bytes get the same id). */
  id: string;
  version: string;
  target: OtaTarget;
  size: number;
  /** 64 lowercase hex characters. */
  sha256: string;
  /** Base64 DER ECDSA P-256 signature over the image bytes. */
  signature: string;
  uploadedAt: string;
}

export interface OtaStoreOptions {
  dataDir: string;
  maxImages: number;
  maxImageBytes: number;
  /** The operator's public key; null: uploads are refused (OTA_NOT_CONFIGURED). */
  publicKey: KeyObject | null;
  now?: () => number;
}

export interface OtaStore {
  list(): Promise<OtaImage[]>;
  /** NOT_FOUND for an unknown id. */
  get(id: string): Promise<OtaImage>;
  /**
   * Verifies and stores an image. OTA_NOT_CONFIGURED without a public key, OTA_SIGNATURE_INVALID when
   * the signature is missing or does not verify, PAYLOAD_TOO_LARGE past the size bound, OTA_STORE_FULL
   * past the count bound, BAD_REQUEST for an empty image or a bad field. The same bytes again answer the
   * stored image.
   */
  add(meta: { version: string; target: string; signature: string | undefined }, bytes: Buffer): Promise<OtaImage>;
  remove(id: string): Promise<OtaImage>;
  imagePath(id: string): string;
  readonly maxImageBytes: number;
}

export const OTA_DIR = 'ota';
export const VERSION_RE = /^[\x21-\x7e]{1,32}$/;
const ID_RE = /^[0-9a-f]{16}$/;

export function openOtaStore(o: OtaStoreOptions): OtaStore {
  const root = join(o.dataDir, OTA_DIR, 'images');
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const now = o.now ?? Date.now;
  const get = async (id: string): Promise<OtaImage> => {
    if (!ID_RE.test(id)) throw new HubError('NOT_FOUND', `no OTA image ${id}`);
    try {
      return JSON.parse(await readFile(join(root, `${id}.json`), 'utf8')) as OtaImage;
    } catch {
      throw new HubError('NOT_FOUND', `no OTA image ${id}`);
    }
  };
  const list = async (): Promise<OtaImage[]> => {
    const images: OtaImage[] = [];
    for (const name of await readdir(root)) {
      const id = name.endsWith('.json') ? name.slice(0, -5) : '';
      if (!ID_RE.test(id)) continue;
      try {
        images.push(await get(id));
      } catch {
        // A damaged entry: not listed.
      }
    }
    return images.sort((a, b) => (a.uploadedAt < b.uploadedAt ? 1 : a.uploadedAt > b.uploadedAt ? -1 : 0));
  };
  return {
    list,
    get,
    maxImageBytes: o.maxImageBytes,
    imagePath: (id) => join(root, `${id}.bin`),
    async add(meta, bytes) {
      if (o.publicKey === null) {
        throw new HubError('OTA_NOT_CONFIGURED', 'set OTA_PUBLIC_KEY_FILE to the operator public key to accept images');
      }
      if (!(OTA_TARGETS as readonly string[]).includes(meta.target)) {
        throw new HubError('BAD_REQUEST', `target must be one of ${OTA_TARGETS.join(', ')}`);
      }
      if (!VERSION_RE.test(meta.version)) {
        throw new HubError('BAD_REQUEST', 'version: 1-32 printable characters without spaces');
      }
      if (bytes.length === 0) throw new HubError('BAD_REQUEST', 'the image is empty');
      if (bytes.length > o.maxImageBytes) {
        throw new HubError(
          'PAYLOAD_TOO_LARGE',
          `an OTA image is at most ${o.maxImageBytes} bytes (OTA_MAX_IMAGE_BYTES)`,
        );
      }
      if (meta.signature === undefined || meta.signature === '') {
        throw new HubError('OTA_SIGNATURE_INVALID', 'the image is unsigned: sign it with `npm run hub -- ota sign`');
      }
      if (!verifyImage(bytes, meta.signature, o.publicKey)) {
        throw new HubError('OTA_SIGNATURE_INVALID', 'the signature does not verify with the OTA public key');
      }
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const id = sha256.slice(0, 16);
      const existing = await list();
      const same = existing.find((i) => i.id === id);
      if (same) return same;
      if (existing.length >= o.maxImages) {
        throw new HubError(
          'OTA_STORE_FULL',
          `at most ${o.maxImages} OTA images are kept (OTA_MAX_IMAGES): delete one first`,
        );
      }
      const image: OtaImage = {
        id,
        version: meta.version,
        target: meta.target as OtaTarget,
        size: bytes.length,
        sha256,
        signature: meta.signature,
        uploadedAt: new Date(now()).toISOString(),
      };
      // The image first; the metadata (written atomically, directory synced) makes it visible.
      await writeImageFile(join(root, `${id}.bin`), bytes);
      await writeTextAtomic(join(root, `${id}.json`), `${JSON.stringify(image, null, 2)}\n`);
      return image;
    },
    async remove(id) {
      const image = await get(id);
      await rm(join(root, `${id}.json`), { force: true });
      await rm(join(root, `${id}.bin`), { force: true });
      return image;
    },
  };
}

/** Writes the image bytes through a temporary name (flushed to disk), then renames it into place. */
async function writeImageFile(file: string, data: Buffer): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data, { mode: 0o600, flag: 'wx', flush: true });
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}
