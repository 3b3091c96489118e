// The OTA image store and signing (server/ota/): an image signed with the operator's key is stored
// with its sha256 and signature; unsigned, tampered, wrongly keyed, oversized images and one past
// OTA_MAX_IMAGES are refused with their codes; the CLI's keygen → sign → upload → list → delete works
// on a data directory, and its key header carries the public key.
import { createPublicKey, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runOtaCli } from '../../server/ota/cli.ts';
import { generateSigningKey, parsePublicKey, signImage } from '../../server/ota/signing.ts';
import { openOtaStore } from '../../server/ota/store.ts';

const keys = generateSigningKey();
const other = generateSigningKey();
const image = (n: number, seed = 1) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ota-store-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const store = (over: Partial<Parameters<typeof openOtaStore>[0]> = {}) =>
  openOtaStore({
    dataDir: dir,
    maxImages: 3,
    maxImageBytes: 64 * 1024,
    publicKey: parsePublicKey(keys.publicPem),
    ...over,
  });

const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'stored';
  } catch (err) {
    return (err as { code?: string }).code;
  }
};

describe('OTA image store', () => {
  it('stores a signed image with size, sha256 and signature; the signature verifies as mbedTLS would (DER, SHA-256)', async () => {
    const s = store();
    const bytes = image(5000);
    const sig = signImage(bytes, keys.privatePem);
    const stored = await s.add({ version: '1.2.0', target: 'esp32', signature: sig }, bytes);
    expect(stored).toMatchObject({ version: '1.2.0', target: 'esp32', size: 5000, signature: sig });
    expect(stored.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(readFileSync(s.imagePath(stored.id))).toEqual(bytes);
    expect(verify('sha256', bytes, createPublicKey(keys.publicPem), Buffer.from(sig, 'base64'))).toBe(true);
    expect((await s.list()).map((i) => i.id)).toEqual([stored.id]);
    // Same bytes again: the stored image, not a second copy.
    expect((await s.add({ version: '1.2.0', target: 'esp32', signature: sig }, bytes)).id).toBe(stored.id);
    expect(await s.list()).toHaveLength(1);
    // Survives a reopen (another process, e.g. the CLI).
    expect((await store().get(stored.id)).sha256).toBe(stored.sha256);
    await s.remove(stored.id);
    expect(await s.list()).toEqual([]);
    expect(await codeOf(s.get(stored.id))).toBe('NOT_FOUND');
  });

  it('refuses unsigned, tampered, wrong-key and garbage signatures with OTA_SIGNATURE_INVALID', async () => {
    const s = store();
    const bytes = image(4000);
    const good = signImage(bytes, keys.privatePem);
    const tampered = Buffer.from(bytes);
    tampered[100] = (tampered[100] as number) ^ 1;
    const meta = (signature: string | undefined) => ({ version: '1.0', target: 'esp32-c3', signature });
    expect(await codeOf(s.add(meta(undefined), bytes))).toBe('OTA_SIGNATURE_INVALID');
    expect(await codeOf(s.add(meta(''), bytes))).toBe('OTA_SIGNATURE_INVALID');
    expect(await codeOf(s.add(meta(good), tampered))).toBe('OTA_SIGNATURE_INVALID');
    expect(await codeOf(s.add(meta(signImage(bytes, other.privatePem)), bytes))).toBe('OTA_SIGNATURE_INVALID');
    expect(await codeOf(s.add(meta('bm90IGEgc2lnbmF0dXJl'), bytes))).toBe('OTA_SIGNATURE_INVALID');
    expect(await codeOf(s.add(meta('*'), bytes))).toBe('OTA_SIGNATURE_INVALID');
    expect(await s.list()).toEqual([]);
    expect(await codeOf(s.add(meta(good), bytes))).toBe('stored');
  });

  it('refuses without a public key, past the size bound, past the count bound, and bad fields', async () => {
    const bytes = image(1000);
    const sig = signImage(bytes, keys.privatePem);
    expect(await codeOf(store({ publicKey: null }).add({ version: '1', target: 'esp32', signature: sig }, bytes))).toBe(
      'OTA_NOT_CONFIGURED',
    );
    const big = image(64 * 1024 + 1);
    const s = store();
    expect(
      await codeOf(s.add({ version: '1', target: 'esp32', signature: signImage(big, keys.privatePem) }, big)),
    ).toBe('PAYLOAD_TOO_LARGE');
    expect(await codeOf(s.add({ version: '1', target: 'esp8266', signature: sig }, bytes))).toBe('BAD_REQUEST');
    expect(await codeOf(s.add({ version: 'a b', target: 'esp32', signature: sig }, bytes))).toBe('BAD_REQUEST');
    for (let i = 0; i < 3; i++) {
      const b = image(1000, i + 10);
      expect(
        await codeOf(s.add({ version: `1.${i}`, target: 'esp32', signature: signImage(b, keys.privatePem) }, b)),
      ).toBe('stored');
    }
    const fourth = image(1000, 99);
    expect(
      await codeOf(s.add({ version: '2', target: 'esp32', signature: signImage(fourth, keys.privatePem) }, fourth)),
    ).toBe('OTA_STORE_FULL');
    expect(await s.list()).toHaveLength(3);
  });

  it('refuses a public key that is not P-256', () => {
    expect(() => parsePublicKey('not a key')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

describe('npm run hub -- ota', () => {
  const run = async (args: string[], env: Record<string, string> = {}) => {
    let out = '';
    let err = '';
    const code = await runOtaCli(args, {
      env: { HUB_DATA_DIR: join(dir, 'data'), ...env },
      stdout: {
        write: (s: string) => {
          out += s;
          return true;
        },
      } as NodeJS.WritableStream,
      stderr: {
        write: (s: string) => {
          err += s;
          return true;
        },
      } as NodeJS.WritableStream,
    } as Parameters<typeof runOtaCli>[1]);
    return { code, out, err };
  };

  it('keygen → sign → upload → list → delete; an unsigned or wrongly keyed upload fails with the code', async () => {
    const keyDir = join(dir, 'keys');
    expect((await run(['keygen', '--out', keyDir])).code).toBe(0);
    expect(statSync(join(keyDir, 'ota-signing.pem')).mode & 0o777).toBe(0o600);
    const pub = readFileSync(join(keyDir, 'ota-signing.pub.pem'), 'utf8');
    const header = readFileSync(join(keyDir, 'ota_public_key.h'), 'utf8');
    expect(header).toContain('OTA_PUBLIC_KEY_PEM');
    expect(header).toContain(pub.trim().split('\n')[1]);
    const bin = join(dir, 'app.bin');
    writeFileSync(bin, image(3000));
    const env = { OTA_PUBLIC_KEY_FILE: join(keyDir, 'ota-signing.pub.pem') };

    const unsigned = await run(['upload', bin, '--version', '1.0.1', '--target', 'esp32', '--json'], env);
    expect(unsigned.code).toBe(1);
    expect(unsigned.out + unsigned.err).toContain('OTA_SIGNATURE_INVALID');

    writeFileSync(join(dir, 'other.pem'), other.privatePem);
    expect((await run(['sign', '--key', join(dir, 'other.pem'), bin])).code).toBe(0);
    const wrong = await run(['upload', bin, '--version', '1.0.1', '--target', 'esp32', '--json'], env);
    expect([wrong.code, (wrong.out + wrong.err).includes('OTA_SIGNATURE_INVALID')]).toEqual([1, true]);

    expect((await run(['sign', '--key', join(keyDir, 'ota-signing.pem'), bin])).code).toBe(0);
    const up = await run(['upload', bin, '--version', '1.0.1', '--target', 'esp32', '--json'], env);
    expect(up.code, up.err).toBe(0);
    const stored = JSON.parse(up.out) as { id: string; version: string };
    expect(stored.version).toBe('1.0.1');
    const listed = await run(['list', '--json']);
    expect((JSON.parse(listed.out) as { images: { id: string }[] }).images.map((i) => i.id)).toEqual([stored.id]);
    expect((await run(['delete', stored.id])).code).toBe(0);
    expect((await run(['list'])).out).toContain('No OTA images');
    expect((await run(['upload', bin])).code).toBe(2);
  });
});
