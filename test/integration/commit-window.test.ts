/**
 * LOG_COMMIT_WINDOW_MAX_MS over a real socket into the real embedded store: a slow device's frames
 * wait for the whole bound and share one commit (one fsync instead of one each: what an SD card is
 * worn by), and their ACK never comes before the bound. The early commit for a device with several
 * frames waiting is held by the local log's unit tests (test/unit/local-log.test.ts), on a fake clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startTestHub, TEST_CHANNELS, TestDevice, type TestHub, telemetry } from './ingest-device-client.ts';

let hub: TestHub | undefined;
afterEach(async () => {
  await hub?.stop();
  await hub?.dir.remove();
  hub = undefined;
});

describe('the commit window bound (LOG_COMMIT_WINDOW_MAX_MS)', () => {
  it('holds a slow device’s frames for the bound, in one commit, and ACKs them after it', async () => {
    hub = await startTestHub({ LOG_COMMIT_WINDOW_MAX_MS: '1000' });
    const token = await hub.addDevice('sd-card-dev');
    const dev = await TestDevice.connect(hub.url, { token });
    await dev.hello('sd-card-dev', 5, { uptimeMs: 60_000 });
    dev.send({ type: 'descriptors', channels: TEST_CHANNELS });
    const commitsBefore = await hub.metricValue('hub_local_log_commits_total');
    const sentAt = performance.now();
    for (const seq of [1, 2]) dev.send(telemetry(5, seq, Date.now() - 10_000 + seq * 1000));
    await dev.ackOf(5, 2);
    // The group opened when the first frame arrived, after it was sent: the bound has passed since.
    expect(performance.now() - sentAt).toBeGreaterThanOrEqual(900);
    expect((await hub.metricValue('hub_local_log_commits_total')) - commitsBefore).toBe(1);
    await dev.close();
  });
});
