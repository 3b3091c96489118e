/**
 * Telemetry during an OTA rollout: 50 simulated boards stream TELEMETRY (10 frames/s each) into a real
 * hub (in this process, embedded mode, ACK after the flushed commit); the frames acknowledged per second
 * and the ACK latency (p50/p99, frame sent → ACK) are measured once with no OTA (the baseline) and once
 * while a campaign sends every board a signed image (`waves 100%`), the downloads throttled by the
 * defaults' shape (OTA_MAX_CONCURRENT_DOWNLOADS 4, OTA_MAX_BYTES_PER_SEC 4 MiB/s here). Each phase uses
 * a fresh fleet (its latency histogram covers that phase only, connection included).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fleet, fleetDeviceIds } from '../firmware-sim/fleet.ts';
import { configFrom } from '../server/config/index.ts';
import { buildHub } from '../server/hub.ts';
import { createLogger } from '../server/log/index.ts';
import { generateSigningKey, signImage } from '../server/ota/signing.ts';
import { openDeviceRegistry } from '../server/registry/index.ts';
import type { BenchOptions, BenchReport, BenchRow } from './run.ts';

export const name = 'ota';

const BOARDS = 50;
const RATE = 10;
const ADMIN = 'bench-ota-admin-token-0123456789abcdef0123';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Phase {
  framesPerSec: number;
  p50: number | null;
  p99: number | null;
  seconds: number;
}

export async function run(options: BenchOptions = { quick: false }): Promise<BenchReport> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-ota-'));
  const keys = generateSigningKey();
  writeFileSync(join(dir, 'pub.pem'), keys.publicPem);
  const imageBytes = options.quick ? 256 * 1024 : 1024 * 1024;
  const image = Buffer.alloc(imageBytes, 0x5a);
  const logger = createLogger('silent');
  const registry = openDeviceRegistry({ dataDir: dir, logger, watchIntervalMs: 0 });
  const tokens = new Map<string, string>();
  for (const id of fleetDeviceIds(BOARDS, 'bench-')) tokens.set(id, (await registry.add(id)).token);
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: '0',
    HUB_DATA_DIR: dir,
    HUB_ADMIN_TOKEN: ADMIN,
    HUB_LOG_LEVEL: 'silent',
    OTA_PUBLIC_KEY_FILE: join(dir, 'pub.pem'),
    OTA_MAX_BYTES_PER_SEC: String(4 * 1024 * 1024),
    OTA_MAX_IMAGE_BYTES: String(4 * 1024 * 1024),
  });
  const hub = buildHub(config, { logger, registry });
  const { port } = await hub.start();
  const http = `http://127.0.0.1:${port}`;
  const auth = { authorization: `Bearer ${ADMIN}` };
  try {
    const up = await fetch(`${http}/api/ota/images?version=bench-2.0.0&target=esp32`, {
      method: 'POST',
      headers: {
        ...auth,
        'content-type': 'application/octet-stream',
        'x-ota-signature': signImage(image, keys.privatePem),
      },
      body: image,
    });
    const imageId = ((await up.json()) as { id: string }).id;

    const phase = async (withOta: boolean): Promise<Phase> => {
      const fleet = new Fleet({
        url: `ws://127.0.0.1:${port}/v1/device`,
        devices: BOARDS,
        idPrefix: 'bench-',
        tokens,
        rate: RATE,
        seed: withOta ? 2 : 1,
        startSpreadMs: 200,
        device: { otaPublicKeyPem: keys.publicPem, firmwareVersion: 'bench-1.0.0' },
      });
      fleet.start();
      while (fleet.snapshot().connected < BOARDS) await sleep(50);
      await sleep(1000);
      const start = performance.now();
      const acked0 = fleet.snapshot().framesAcked;
      let campaignId: string | null = null;
      if (withOta) {
        const res = await fetch(`${http}/api/ota/campaigns`, {
          method: 'POST',
          headers: { ...auth, 'content-type': 'application/json' },
          body: JSON.stringify({ imageId, group: 'bench-*', waves: '100%', maxFailures: '100%' }),
        });
        campaignId = ((await res.json()) as { id: string }).id;
        for (;;) {
          await sleep(250);
          const c = (await (await fetch(`${http}/api/ota/campaigns/${campaignId}`, { headers: auth })).json()) as {
            state: string;
          };
          if (c.state === 'completed' || performance.now() - start > 120_000) break;
        }
      } else {
        await sleep(options.quick ? 4000 : 10_000);
      }
      const seconds = (performance.now() - start) / 1000;
      const acked = fleet.snapshot().framesAcked - acked0;
      const summary = await fleet.stop();
      return {
        framesPerSec: acked / seconds,
        p50: summary.ackLatencyMs.p50,
        p99: summary.ackLatencyMs.p99,
        seconds,
      };
    };

    const base = await phase(false);
    const ota = await phase(true);
    const rows: BenchRow[] = [
      {
        metric: 'frames acked/s during the rollout',
        value: Math.round(ota.framesPerSec),
        unit: 'frames/s',
        note: `${BOARDS} boards × ${RATE} frames/s offered; rollout of ${imageBytes / 1024} KiB to every board took ${ota.seconds.toFixed(1)} s`,
        baseline: { label: 'no OTA', value: Math.round(base.framesPerSec) },
      },
      {
        metric: 'ACK latency p50 during the rollout',
        value: ota.p50 ?? Number.NaN,
        unit: 'ms',
        baseline: { label: 'no OTA', value: base.p50 ?? Number.NaN },
      },
      {
        metric: 'ACK latency p99 during the rollout',
        value: ota.p99 ?? Number.NaN,
        unit: 'ms',
        baseline: { label: 'no OTA', value: base.p99 ?? Number.NaN },
      },
    ];
    return {
      title: 'Telemetry during an OTA rollout (50 simulated boards, real hub)',
      rows,
      notes: [
        'Each phase is a fresh fleet; latency covers the whole phase. During the rollout every board reboots once (boot delay, reconnection, replay of what it buffered meanwhile): that is in both figures, beside the downloads themselves.',
        `Downloads: at most 4 at once, 4 MiB/s across them (OTA_MAX_CONCURRENT_DOWNLOADS, OTA_MAX_BYTES_PER_SEC).`,
      ],
    };
  } finally {
    await hub.stop();
    await registry.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
