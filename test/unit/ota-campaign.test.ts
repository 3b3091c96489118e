// OTA campaign rules without sockets (server/ota/campaign.ts): waves as cumulative counts, the failure
// limit's forms, and the bound on kept campaigns (the oldest finished one goes; unfinished ones are never
// dropped: a new campaign is refused instead), kept across a reopen of the data directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HubEventBus } from '../../server/events.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import { failureLimit, MAX_CAMPAIGNS, openCampaigns, parseWaves } from '../../server/ota/campaign.ts';
import { otaMetrics } from '../../server/ota/metrics.ts';
import { generateSigningKey, parsePublicKey, signImage } from '../../server/ota/signing.ts';
import { openOtaStore } from '../../server/ota/store.ts';

let dir: string;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('waves and the failure limit', () => {
  it('turn 1,10%,100% into cumulative board counts, always reaching every board', () => {
    expect(parseWaves('1,10%,100%', 50)).toEqual([1, 5, 50]);
    expect(parseWaves('1,10%', 50)).toEqual([1, 5, 50]);
    expect(parseWaves('100%', 3)).toEqual([3]);
    expect(parseWaves('5,1,10%', 20)).toEqual([5, 20]);
    expect(() => parseWaves('ten', 5)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    expect(failureLimit('10%')).toEqual({ share: 0.1 });
    expect(failureLimit('3')).toEqual({ count: 3 });
    expect(() => failureLimit('many')).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });
});

describe('kept campaigns', () => {
  it(`are at most ${MAX_CAMPAIGNS}: the oldest finished one goes, unfinished ones refuse a new one`, async () => {
    dir = mkdtempSync(join(tmpdir(), 'ota-campaign-'));
    const keys = generateSigningKey();
    const store = openOtaStore({
      dataDir: dir,
      maxImages: 2,
      maxImageBytes: 4096,
      publicKey: parsePublicKey(keys.publicPem),
    });
    const bytes = Buffer.alloc(100, 1);
    const image = await store.add(
      { version: '2', target: 'esp32', signature: signImage(bytes, keys.privatePem) },
      bytes,
    );
    let t = 0;
    const open = () =>
      openCampaigns({
        dataDir: dir,
        store,
        bus: new HubEventBus(),
        metrics: otaMetrics(createMetrics()),
        logger: createLogger('silent'),
        now: () => ++t,
        knownDevices: () => ['dev-1'],
        isOnline: () => false,
        send: () => {
          throw new Error('offline boards get nothing');
        },
        resultTimeoutMs: 60_000,
      });
    const c = open();
    const ids: string[] = [];
    for (let i = 0; i < MAX_CAMPAIGNS; i++) ids.push((await c.start({ imageId: image.id })).id);
    await expect(c.start({ imageId: image.id })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    c.abort(ids[3] as string);
    c.abort(ids[7] as string);
    const next = await c.start({ imageId: image.id });
    expect(c.list()).toHaveLength(MAX_CAMPAIGNS);
    expect(c.list().map((x) => x.id)).not.toContain(ids[3]);
    expect(c.list().map((x) => x.id)).toContain(ids[7]);
    expect(c.get(next.id).boards['dev-1']?.state).toBe('pending');
    await c.stop();
    const again = open();
    expect(
      again
        .list()
        .map((x) => x.id)
        .sort(),
    ).toEqual(
      c
        .list()
        .map((x) => x.id)
        .sort(),
    );
    expect(again.get(ids[7] as string).state).toBe('aborted');
    await again.stop();
  });
});
