// OTA over real HTTP on a real hub: the admin API refuses unsigned, wrongly keyed and oversized images
// and stores a signed one; the `ota` command reaches the board with a per-device credential (never
// shown by the API nor logged); GET /v1/ota/images/:id answers 401 without it, the whole image with
// it, 206 for a Range (a download cut half-way resumes to the same bytes), and 503 + Retry-After past
// OTA_MAX_CONCURRENT_DOWNLOADS, all counted in the metrics.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Command } from '../../server/codec/index.ts';
import { generateSigningKey, signImage } from '../../server/ota/signing.ts';
import { until } from '../harness/index.ts';
import { capturingLogger, request } from '../unit/http-helpers.ts';
import { startTestHub, TestDevice, type TestHub } from './ingest-device-client.ts';

const ADMIN = 'ota-download-admin-token-0123456789abcdef';
const keys = generateSigningKey();
const other = generateSigningKey();
// 128 KiB at 32 KiB/s: a download lasts a few seconds, long enough to be seen active.
const IMAGE = Buffer.from(Array.from({ length: 128 * 1024 }, (_, i) => (i * 7919 + (i >> 8)) & 0xff));
const SIG = signImage(IMAGE, keys.privatePem);

let t: TestHub;
let logs: ReturnType<typeof capturingLogger>;
const admin = { authorization: `Bearer ${ADMIN}` };

beforeAll(async () => {
  logs = capturingLogger();
  const { tempDir } = await import('../harness/index.ts');
  const dir = await tempDir('ota-download');
  const pub = join(dir.path, 'ota.pub.pem');
  writeFileSync(pub, keys.publicPem);
  t = await startTestHub(
    {
      HUB_ADMIN_TOKEN: ADMIN,
      OTA_PUBLIC_KEY_FILE: pub,
      OTA_MAX_IMAGE_BYTES: String(256 * 1024),
      OTA_MAX_CONCURRENT_DOWNLOADS: '1',
      OTA_MAX_BYTES_PER_SEC: String(32 * 1024),
    },
    { logger: logs.logger },
    dir,
  );
});
afterAll(async () => {
  await t?.stop();
});

const upload = (bytes: Buffer, query: string, headers: Record<string, string> = {}) =>
  request(t.port, 'POST', `/api/ota/images?${query}`, {
    headers: { ...admin, 'content-type': 'application/octet-stream', ...headers },
    body: bytes,
  });

/** GET the image; `abortAfter` destroys the response after that many bytes. */
function download(
  id: string,
  credential: string | null,
  opts: { range?: string; abortAfter?: number } = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (credential !== null) headers.authorization = `Bearer ${credential}`;
    if (opts.range) headers.range = opts.range;
    const req = httpRequest(
      { host: '127.0.0.1', port: t.port, path: `/v1/ota/images/${id}`, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          n += c.length;
          if (opts.abortAfter !== undefined && n >= opts.abortAfter) {
            req.destroy();
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
          }
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', () => undefined);
      },
    );
    req.on('error', (err) => (opts.abortAfter === undefined ? reject(err) : undefined));
    req.end();
  });
}

let imageId: string;

describe('the OTA admin API', () => {
  it('refuses unsigned (422), wrongly keyed (422) and oversized (413) images, stores a signed one (201)', async () => {
    const unsigned = await upload(IMAGE, 'version=2.0.0&target=esp32');
    expect([unsigned.status, (unsigned.json as { error: { code: string } }).error.code]).toEqual([
      422,
      'OTA_SIGNATURE_INVALID',
    ]);
    const wrong = await upload(IMAGE, 'version=2.0.0&target=esp32', {
      'x-ota-signature': signImage(IMAGE, other.privatePem),
    });
    expect([wrong.status, (wrong.json as { error: { code: string } }).error.code]).toEqual([
      422,
      'OTA_SIGNATURE_INVALID',
    ]);
    const big = Buffer.alloc(256 * 1024 + 1, 1);
    const tooBig = await upload(big, 'version=2.0.0&target=esp32', {
      'x-ota-signature': signImage(big, keys.privatePem),
    });
    expect(tooBig.status).toBe(413);
    const ok = await upload(IMAGE, 'version=2.0.0&target=esp32', { 'x-ota-signature': SIG });
    expect(ok.status).toBe(201);
    const image = ok.json as { id: string; sha256: string; size: number };
    expect(image.sha256).toBe(createHash('sha256').update(IMAGE).digest('hex'));
    expect(image.size).toBe(IMAGE.length);
    imageId = image.id;
    const list = await request(t.port, 'GET', '/api/ota/images', { headers: admin });
    expect((list.json as { images: { id: string }[] }).images.map((i) => i.id)).toEqual([imageId]);
    expect(await t.metricValue('hub_ota_uploads_total', { outcome: 'signature_invalid' })).toBe(2);
    expect(await t.metricValue('hub_ota_uploads_total', { outcome: 'too_large' })).toBe(1);
    expect(await t.metricValue('hub_ota_uploads_total', { outcome: 'stored' })).toBe(1);
    // Without the admin token: refused.
    expect((await request(t.port, 'GET', '/api/ota/images')).status).toBe(401);
  });
});

describe('the download endpoint', () => {
  let credential: string;
  let device: TestDevice;

  beforeAll(async () => {
    const token = await t.addDevice('ota-dev-1');
    device = await TestDevice.connect(t.url, { token });
    await device.hello('ota-dev-1', 7);
    const sent = await request(t.port, 'POST', '/api/devices/ota-dev-1/ota', {
      headers: { ...admin, 'content-type': 'application/json' },
      body: JSON.stringify({ imageId }),
    });
    expect(sent.status).toBe(202);
    const cmd = (await device.next('command')) as Command;
    const args = Object.fromEntries(cmd.args.map((a) => [a.key, a.value]));
    expect(cmd.name).toBe('ota');
    expect(args).toMatchObject({
      url: `http://127.0.0.1:${t.port}/v1/ota/images/${imageId}`,
      sha256: createHash('sha256').update(IMAGE).digest('hex'),
      signature: SIG,
      version: '2.0.0',
      size: IMAGE.length,
    });
    credential = args.credential as string;
    expect(credential).toMatch(/^[A-Za-z0-9_-]{22}$/);
    // The API's record of the command never shows the credential.
    expect(JSON.stringify(sent.json)).not.toContain(credential);
  });
  afterAll(async () => {
    await device?.close();
  });

  it('answers 401 without a credential, with a made-up one, and for another image', async () => {
    expect((await download(imageId, null)).status).toBe(401);
    expect((await download(imageId, 'AAAAAAAAAAAAAAAAAAAAAA')).status).toBe(401);
    expect((await download('0123456789abcdef', credential)).status).toBe(401);
    expect(await t.metricValue('hub_ota_download_refusals_total', { reason: 'credential' })).toBe(3);
  });

  it('sends the whole image, and a cut download resumes with Range to the same bytes (206)', async () => {
    const whole = await download(imageId, credential);
    expect(whole.status).toBe(200);
    expect(whole.body.equals(IMAGE)).toBe(true);

    const first = await download(imageId, credential, { abortAfter: 40_000 });
    expect(first.body.length).toBeGreaterThanOrEqual(40_000);
    await until('the cut download to end on the hub', async () =>
      (await t.metricValue('hub_ota_downloads_total', { outcome: 'aborted' })) === 1 ? true : undefined,
    );
    const rest = await download(imageId, credential, { range: `bytes=${first.body.length}-` });
    expect(rest.status).toBe(206);
    expect(rest.headers['content-range']).toBe(`bytes ${first.body.length}-${IMAGE.length - 1}/${IMAGE.length}`);
    expect(Buffer.concat([first.body, rest.body]).equals(IMAGE)).toBe(true);
    const past = await download(imageId, credential, { range: `bytes=${IMAGE.length}-` });
    expect(past.status).toBe(416);
    expect(await t.metricValue('hub_ota_download_bytes_total')).toBeGreaterThanOrEqual(2 * IMAGE.length);
  });

  it('refuses a download past OTA_MAX_CONCURRENT_DOWNLOADS with 503 + Retry-After, counted', async () => {
    const running = download(imageId, credential);
    await until('one download active', async () =>
      (await t.metricValue('hub_ota_downloads_active')) === 1 ? true : undefined,
    );
    const refused = await download(imageId, credential);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('2');
    expect(JSON.parse(refused.body.toString()).error.code).toBe('OTA_BUSY');
    expect(await t.metricValue('hub_ota_download_refusals_total', { reason: 'busy' })).toBe(1);
    expect((await running).body.equals(IMAGE)).toBe(true);
    await until('no download active', async () =>
      (await t.metricValue('hub_ota_downloads_active')) === 0 ? true : undefined,
    );
  });

  it('logs downloads with the device and image, never the credential', () => {
    const text = logs.raw.join('\n');
    expect(text).not.toContain(credential);
    const started = logs.lines.filter((l) => l.msg === 'OTA download started');
    expect(started.length).toBeGreaterThan(0);
    expect(started[0]).toMatchObject({ deviceId: 'ota-dev-1', imageId });
    expect(logs.lines.some((l) => l.msg === 'OTA download refused: bad or expired credential')).toBe(true);
  });
});
