// OTA download throttling and credentials (server/ota/): the token bucket lets one second's worth of
// bytes through and holds the next bytes until the (injected) clock has moved on; the concurrency
// bound hands out at most N slots; a credential works for its image only, until its TTL.
import { describe, expect, it } from 'vitest';
import { createOtaCredentials } from '../../server/ota/credentials.ts';
import { createDownloadThrottle } from '../../server/ota/throttle.ts';
import { until } from '../harness/index.ts';

describe('download throttle', () => {
  it('passes a burst of bytesPerSec, then waits for the clock: bytes/s never exceed the rate', async () => {
    let clock = 0;
    let reads = 0;
    const th = createDownloadThrottle({
      maxConcurrent: 2,
      bytesPerSec: 10_000,
      now: () => {
        reads++;
        return clock;
      },
    });
    await th.take(10_000);
    let done = false;
    const next = th.take(5_000).then(() => {
      done = true;
    });
    const before = reads;
    // The bucket re-checks the clock several times without letting the bytes through.
    await until('the throttle to poll the clock', () => reads > before + 3);
    expect(done).toBe(false);
    clock += 400; // 4,000 bytes' worth: still not enough
    const mid = reads;
    await until('the throttle to poll again', () => reads > mid + 3);
    expect(done).toBe(false);
    clock += 100; // 5,000 bytes' worth in all
    await next;
    expect(done).toBe(true);
  });

  it('hands out at most maxConcurrent slots; a released slot is free again', () => {
    const th = createDownloadThrottle({ maxConcurrent: 2, bytesPerSec: 1024 });
    const a = th.acquire();
    const b = th.acquire();
    expect([a !== null, b !== null, th.acquire()]).toEqual([true, true, null]);
    a?.release();
    a?.release(); // twice: counted once
    expect(th.active()).toBe(1);
    expect(th.acquire()).not.toBeNull();
  });
});

describe('download credentials', () => {
  it('are 128-bit base64url, for one image, until their TTL', () => {
    let now = 1000;
    const c = createOtaCredentials({ ttlMs: 900_000, now: () => now });
    const cred = c.issue('dev-1', 'aaaaaaaaaaaaaaaa');
    expect(cred).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(c.check(cred, 'aaaaaaaaaaaaaaaa')).toMatchObject({ deviceId: 'dev-1' });
    expect(c.check(cred, 'bbbbbbbbbbbbbbbb')).toBeNull();
    expect(c.check(`${cred}x`, 'aaaaaaaaaaaaaaaa')).toBeNull();
    now += 900_000;
    expect(c.check(cred, 'aaaaaaaaaaaaaaaa')).toBeNull();
  });

  it('keep at most `max` grants, dropping the oldest', () => {
    const c = createOtaCredentials({ ttlMs: 60_000, now: () => 0, max: 2 });
    const first = c.issue('a', 'aaaaaaaaaaaaaaaa');
    c.issue('b', 'aaaaaaaaaaaaaaaa');
    const third = c.issue('c', 'aaaaaaaaaaaaaaaa');
    expect(c.size()).toBe(2);
    expect(c.check(first, 'aaaaaaaaaaaaaaaa')).toBeNull();
    expect(c.check(third, 'aaaaaaaaaaaaaaaa')).not.toBeNull();
  });
});
