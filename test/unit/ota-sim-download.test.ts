// The simulated board's OTA download (firmware-sim/ota.ts) against a real HTTP server on loopback: a
// connection cut half-way resumes with `Range: bytes=N-` to the exact image; a 503 with Retry-After is
// waited out and retried; a wrong hash or signature fails naming the step; bad arguments are refused.
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Fleet, fleetDeviceIds } from '../../firmware-sim/fleet.ts';
import { parseCliOptions, UsageError } from '../../firmware-sim/options.ts';
import { downloadAndVerify, otaPublicKey, parseOtaArgs } from '../../firmware-sim/ota.ts';
import { generateSigningKey, signImage } from '../../server/ota/signing.ts';

const keys = generateSigningKey();
const IMAGE = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 13 + 5) & 0xff));
const SHA = createHash('sha256').update(IMAGE).digest('hex');

let server: Server | null = null;
afterEach(async () => {
  const s = server;
  server = null;
  if (s === null) return;
  s.closeAllConnections();
  await new Promise((r) => s.close(r));
});

/** Serves IMAGE with Range; `script` decides per request: 'cut' (send 20,000 bytes, destroy), '503', or 'ok'. */
async function serveImage(script: ('cut' | '503' | 'ok')[]) {
  const seen: { range: string | undefined; auth: string | undefined }[] = [];
  server = createServer((req, res) => {
    seen.push({ range: req.headers.range, auth: req.headers.authorization });
    const what = script[seen.length - 1] ?? 'ok';
    if (what === '503') {
      res.writeHead(503, { 'retry-after': '0' }).end();
      return;
    }
    const from = req.headers.range ? Number(/bytes=(\d+)-/.exec(req.headers.range)?.[1]) : 0;
    const body = IMAGE.subarray(from);
    res.writeHead(from > 0 ? 206 : 200, { 'content-length': body.length });
    if (what === 'cut') {
      res.write(body.subarray(0, 20_000), () => res.socket?.destroy());
      return;
    }
    res.end(body);
  });
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/v1/ota/images/abc`, seen };
}

const req = (url: string, over: Partial<{ sha256: string; signature: string }> = {}) => ({
  url,
  credential: 'cred-123',
  sha256: SHA,
  signature: signImage(IMAGE, keys.privatePem),
  version: '2.0.0',
  size: IMAGE.length,
  ...over,
});

describe('simulated OTA download', () => {
  it('resumes a cut download with Range and gets the exact image', async () => {
    const { url, seen } = await serveImage(['cut', 'cut', 'ok']);
    const out = await downloadAndVerify(req(url), otaPublicKey(keys.publicPem), { retryMs: 1 });
    expect(out.ok).toBe(true);
    if (out.ok) expect(out.image.equals(IMAGE)).toBe(true);
    expect(seen.map((s) => s.range)).toEqual([undefined, 'bytes=20000-', 'bytes=40000-']);
    expect(seen.every((s) => s.auth === 'Bearer cred-123')).toBe(true);
  });

  it('waits out a 503 and retries', async () => {
    const { url, seen } = await serveImage(['503', 'ok']);
    const out = await downloadAndVerify(req(url), otaPublicKey(keys.publicPem), { retryMs: 1 });
    expect([out.ok, seen.length]).toEqual([true, 2]);
  });

  it('fails naming the step: hash, signature', async () => {
    const { url } = await serveImage([]);
    const badHash = await downloadAndVerify(req(url, { sha256: '0'.repeat(64) }), null);
    expect(badHash).toMatchObject({ ok: false, step: 'hash' });
    const badSig = await downloadAndVerify(
      req(url, { signature: signImage(IMAGE, generateSigningKey().privatePem) }),
      otaPublicKey(keys.publicPem),
    );
    expect(badSig).toMatchObject({ ok: false, step: 'signature' });
  });

  it('refuses bad arguments', () => {
    const good = new Map<string, unknown>(Object.entries(req('http://hub/v1/ota/images/abc')));
    expect(typeof parseOtaArgs(good)).toBe('object');
    for (const [k, v] of [
      ['url', 'ftp://x'],
      ['sha256', 'XYZ'],
      ['size', 0],
      ['credential', undefined],
    ] as const) {
      const m = new Map(good);
      m.set(k, v);
      expect(typeof parseOtaArgs(m), k).toBe('string');
    }
  });
});

describe('--ota-fail-health', () => {
  const fleet = (fraction: number, seed: number) =>
    new Fleet({
      url: 'ws://127.0.0.1:9/v1/device',
      devices: 200,
      seed,
      tokens: new Map(fleetDeviceIds(200).map((id) => [id, `token-${id}`])),
      otaFailHealth: fraction,
    });
  const failing = (f: Fleet) => f.devices.filter((d) => d.otaFailsHealth).map((d) => d.id);

  it('picks that share of the boards by the seed (the same seed, the same boards)', () => {
    const a = failing(fleet(0.2, 7));
    expect(a.length).toBeGreaterThan(20);
    expect(a.length).toBeLessThan(60);
    expect(failing(fleet(0.2, 7))).toEqual(a);
    expect(failing(fleet(0, 7))).toEqual([]);
    expect(failing(fleet(1, 7))).toHaveLength(200);
  });

  it('is parsed from the command line, 0..1', () => {
    const base = ['--tokens-file', 'x.csv'];
    expect(parseCliOptions([...base, '--ota-fail-health', '0.2'], {}).otaFailHealth).toBe(0.2);
    expect(parseCliOptions(base, {}).otaFailHealth).toBe(0);
    expect(() => parseCliOptions([...base, '--ota-fail-health', '1.5'], {})).toThrow(UsageError);
    expect(() => parseCliOptions([...base, '--ota-public-key', '/no/such/key.pem'], {})).toThrow(UsageError);
  });
});
