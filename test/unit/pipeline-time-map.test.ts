/** Time mapping and clamping [PROTO-3.4.1]: pure function, table of cases. */
import { describe, expect, it } from 'vitest';
import { mapFrameTime, type TimeMapInput } from '../../server/pipeline/time-map.ts';

const NOW = 1_700_000_000_000;
const base: TimeMapInput = {
  baseTime: NOW - 10_000,
  unsynced: false,
  minDeltaMs: 0,
  maxDeltaMs: 2000,
  bootOffsetMs: null,
  bootCorrectionMs: null,
  helloOffsetMs: null,
  receivedAtMs: NOW,
  nowMs: NOW,
  firstSeenMs: NOW - 3_600_000,
  maxFutureSkewMs: 300_000,
};

describe('mapFrameTime', () => {
  it('leaves a plausible synced frame alone', () => {
    expect(mapFrameTime(base)).toEqual({
      timeOffsetMs: 0,
      newBootOffsetMs: null,
      newBootCorrectionMs: null,
      clamp: null,
      estimated: false,
      minTimeMs: NOW - 10_000,
      maxTimeMs: NOW - 8000,
    });
  });

  it('anchors the first unsynced frame of a boot on the HELLO and asks to persist that offset', () => {
    const r = mapFrameTime({ ...base, unsynced: true, baseTime: 50_000, helloOffsetMs: NOW - 60_000 });
    expect(r.timeOffsetMs).toBe(NOW - 60_000);
    expect(r.newBootOffsetMs).toBe(NOW - 60_000);
    expect(r.minTimeMs).toBe(NOW - 10_000);
    expect(r.estimated).toBe(false);
  });

  it('reuses the persisted boot offset, whatever the HELLO or the clock say now (replays map identically)', () => {
    const first = mapFrameTime({ ...base, unsynced: true, baseTime: 50_000, bootOffsetMs: NOW - 60_000 });
    const replay = mapFrameTime({
      ...base,
      unsynced: true,
      baseTime: 50_000,
      bootOffsetMs: NOW - 60_000,
      helloOffsetMs: NOW - 1234,
      receivedAtMs: NOW + 5000,
      nowMs: NOW + 5000,
    });
    expect(replay.timeOffsetMs).toBe(first.timeOffsetMs);
    expect(replay.newBootOffsetMs).toBeNull();
  });

  it('estimates an unanchored boot (replayed from flash after a reboot) with its last sample at arrival', () => {
    const r = mapFrameTime({ ...base, unsynced: true, baseTime: 7000, maxDeltaMs: 3000 });
    expect(r.estimated).toBe(true);
    expect(r.maxTimeMs).toBe(NOW);
    expect(r.newBootOffsetMs).toBe(NOW - 10_000);
  });

  it('clamps frames too far in the future so the last sample is now, keeping the spacing', () => {
    const r = mapFrameTime({ ...base, baseTime: NOW + 3_600_000 });
    expect(r.clamp).toBe('future');
    expect(r.maxTimeMs).toBe(NOW);
    expect(r.minTimeMs).toBe(NOW - 2000);
    expect(r.timeOffsetMs).toBe(-3_600_000 - 2000);
  });

  it('allows the configured skew into the future', () => {
    expect(mapFrameTime({ ...base, baseTime: NOW + 290_000, maxDeltaMs: 0 }).clamp).toBeNull();
  });

  it('clamps frames before the first sighting up to it', () => {
    const r = mapFrameTime({ ...base, baseTime: 1000 }); // 1970: a device clock that was never set
    expect(r.clamp).toBe('before_first_seen');
    expect(r.minTimeMs).toBe(base.firstSeenMs);
    expect(r.maxTimeMs).toBe(base.firstSeenMs + 2000);
  });

  it('gives a boot whose clock is hours behind ONE persisted correction: its frames keep their spacing', () => {
    const behind = NOW - 3 * 3_600_000 - 3_600_000; // 3 h before first sighting
    const first = mapFrameTime({ ...base, baseTime: behind });
    expect(first.clamp).toBe('before_first_seen');
    expect(first.newBootCorrectionMs).toBe(first.timeOffsetMs);
    const times = [first.minTimeMs];
    for (let k = 1; k <= 5; k++) {
      const r = mapFrameTime({
        ...base,
        baseTime: behind + k * 2000,
        nowMs: NOW + k * 2000,
        bootCorrectionMs: first.newBootCorrectionMs,
      });
      expect(r.clamp).toBeNull();
      expect(r.newBootCorrectionMs).toBeNull();
      times.push(r.minTimeMs);
    }
    // One timeline: consecutive frames 2 s apart stay 2 s apart (no two frames on the same timestamps).
    expect(times.map((t) => t - (times[0] as number))).toEqual([0, 2000, 4000, 6000, 8000, 10_000]);
    // A replay of the first frame, later, maps to the same times.
    const replay = mapFrameTime({
      ...base,
      baseTime: behind,
      nowMs: NOW + 60_000,
      bootCorrectionMs: first.newBootCorrectionMs,
    });
    expect(replay.minTimeMs).toBe(first.minTimeMs);
  });

  it('drops the correction once the device clock is right again', () => {
    const r = mapFrameTime({ ...base, bootCorrectionMs: 4 * 3_600_000 });
    expect(r.timeOffsetMs).toBe(0);
    expect(r.clamp).toBeNull();
  });

  it("folds a clamp of a boot's first unsynced frame into the persisted boot offset", () => {
    const r = mapFrameTime({ ...base, unsynced: true, baseTime: 50_000, helloOffsetMs: NOW + 3_600_000 });
    expect(r.clamp).toBe('future');
    expect(r.newBootOffsetMs).toBe(r.timeOffsetMs);
  });
});
