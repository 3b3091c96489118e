/**
 * OTA rollout campaigns (docs/ota.md): one image to all boards, a list, or a glob over device ids
 * (a group), in waves (e.g. `1,10%,100%`: cumulative shares of the boards). Each board goes
 * pending → sent → downloading → succeeded | failed | rolled_back | timed_out:
 * - `downloading` when the board answers COMMAND_ACCEPTED;
 * - `failed` on COMMAND_RESULT ≠ 0 (the message names the step);
 * - `succeeded` when its next HELLO carries the image's version;
 * - `rolled_back` when, after COMMAND_RESULT 0, its next HELLO carries another version;
 * - `timed_out` without either within the result timeout (OTA_RESULT_TIMEOUT_SEC); a later HELLO with
 *   the image's version still turns it into `succeeded`.
 * A board offline when its wave starts stays pending and gets the command when it returns (a HELLO
 * before any RESULT — the board restarted mid-download — sends it again). The next wave starts when
 * every board sent in this one has an outcome. The campaign pauses by itself when the failures
 * (failed, rolled_back, timed_out) among the boards with an outcome exceed `maxFailures` (a share
 * like `10%`, or a count); the operator resumes or aborts it. State lives in
 * `<dataDir>/ota/campaigns.json` (written atomically on every change), so a hub restart continues
 * where it stopped.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HubError } from '../errors.ts';
import type { HubEventBus } from '../events.ts';
import type { Logger } from '../log/index.ts';
import { writeTextAtomic } from '../registry/store.ts';
import type { OtaMetrics } from './metrics.ts';
import type { OtaImage, OtaStore } from './store.ts';

export const BOARD_STATES = [
  'pending',
  'sent',
  'downloading',
  'succeeded',
  'failed',
  'rolled_back',
  'timed_out',
] as const;
export type BoardState = (typeof BOARD_STATES)[number];
export type CampaignState = 'running' | 'paused' | 'aborted' | 'completed';

export interface CampaignBoard {
  state: BoardState;
  /** 0-based wave the board belongs to. */
  wave: number;
  commandId?: number;
  sentAtMs?: number;
  /** COMMAND_RESULT 0 arrived: the board is rebooting into the image. */
  resultOk?: boolean;
  /** The version its last HELLO carried. */
  version?: string;
  detail?: string;
}

export interface Campaign {
  id: string;
  imageId: string;
  version: string;
  target: { kind: 'all' } | { kind: 'list'; devices: string[] } | { kind: 'group'; glob: string };
  /** As given, e.g. `1,10%,100%`. */
  waves: string;
  /** Cumulative board counts that end each wave. */
  waveEnds: number[];
  /** The wave being sent (0-based). */
  wave: number;
  /** As given, e.g. `10%` or `3`. */
  maxFailures: string;
  state: CampaignState;
  reason: string | null;
  createdAtMs: number;
  updatedAtMs: number;
  boards: Record<string, CampaignBoard>;
}

export interface StartCampaign {
  imageId: string;
  devices?: string[];
  group?: string;
  waves?: string;
  maxFailures?: string;
}

export interface CampaignsOptions {
  dataDir: string;
  store: OtaStore;
  bus: HubEventBus;
  metrics: OtaMetrics;
  logger: Logger;
  now: () => number;
  /** Registered, not revoked device ids (targets `all` and groups). */
  knownDevices: () => string[];
  isOnline: (deviceId: string) => boolean;
  /** Sends the `ota` command; returns its command id. */
  send: (deviceId: string, image: OtaImage) => number;
  resultTimeoutMs: number;
}

export interface Campaigns {
  start(spec: StartCampaign): Promise<Campaign>;
  list(): Campaign[];
  get(id: string): Campaign;
  pause(id: string): Campaign;
  resume(id: string): Campaign;
  abort(id: string): Campaign;
  /** Settles pending writes, stops timers and listeners. */
  stop(): Promise<void>;
}

/** Campaigns kept at most; the oldest finished (completed, aborted) one goes when a new one starts. */
export const MAX_CAMPAIGNS = 50;

const FINAL: ReadonlySet<BoardState> = new Set(['succeeded', 'failed', 'rolled_back', 'timed_out']);
const BAD: ReadonlySet<BoardState> = new Set(['failed', 'rolled_back', 'timed_out']);

/** `1,10%,100%` over n boards → cumulative ends [1, 5, 50]; the last wave always reaches n. */
export function parseWaves(spec: string, n: number): number[] {
  const ends: number[] = [];
  for (const part of spec.split(',').map((p) => p.trim())) {
    const m = /^(\d{1,7})(%?)$/.exec(part);
    if (!m) throw new HubError('BAD_REQUEST', `waves: "${part}" is not a count or a percentage (e.g. 1,10%,100%)`);
    const v = Number(m[1]);
    if (m[2] === '%' && (v < 1 || v > 100)) throw new HubError('BAD_REQUEST', 'waves: a percentage is 1%..100%');
    const end = Math.min(n, m[2] === '%' ? Math.ceil((n * v) / 100) : v);
    if (end > (ends.at(-1) ?? 0)) ends.push(end);
  }
  if ((ends.at(-1) ?? 0) < n) ends.push(n);
  return ends;
}

/** `10%` → a share; `3` → a count. */
export function failureLimit(spec: string): { share: number } | { count: number } {
  const m = /^(\d{1,7})(%?)$/.exec(spec.trim());
  if (!m) throw new HubError('BAD_REQUEST', 'maxFailures: a count or a percentage, e.g. 10%');
  return m[2] === '%' ? { share: Number(m[1]) / 100 } : { count: Number(m[1]) };
}

function globRe(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

export function openCampaigns(o: CampaignsOptions): Campaigns {
  const file = join(o.dataDir, 'ota', 'campaigns.json');
  const logger = o.logger.child({ component: 'ota-campaign' });
  const campaigns = new Map<string, Campaign>();
  try {
    for (const c of JSON.parse(readFileSync(file, 'utf8')).campaigns as Campaign[]) campaigns.set(c.id, c);
  } catch {
    // No campaigns yet (or none readable): start empty.
  }
  const images = new Map<string, OtaImage>();
  let writing: Promise<void> = Promise.resolve();
  let dirty = false;
  const save = () => {
    if (dirty) return;
    dirty = true;
    writing = writing.then(async () => {
      dirty = false;
      const text = `${JSON.stringify({ campaigns: [...campaigns.values()] })}\n`;
      await writeTextAtomic(file, text).catch((err) => logger.error({ err }, 'could not save the OTA campaigns'));
    });
  };
  const gauge = () => {
    const counts = Object.fromEntries(BOARD_STATES.map((s) => [s, 0])) as Record<BoardState, number>;
    for (const c of campaigns.values()) for (const b of Object.values(c.boards)) counts[b.state]++;
    for (const s of BOARD_STATES) o.metrics.boards.set({ state: s }, counts[s]);
  };
  const changed = (c: Campaign, what: string, deviceId?: string) => {
    c.updatedAtMs = o.now();
    save();
    gauge();
    const counts: Partial<Record<BoardState, number>> = {};
    for (const b of Object.values(c.boards)) counts[b.state] = (counts[b.state] ?? 0) + 1;
    o.bus.emit('ota:campaign', {
      campaignId: c.id,
      state: c.state,
      wave: c.wave,
      what,
      counts,
      atMs: c.updatedAtMs,
      ...(deviceId ? { deviceId, boardState: c.boards[deviceId]?.state } : {}),
    });
  };

  const setBoard = (c: Campaign, id: string, state: BoardState, detail?: string) => {
    const b = c.boards[id];
    if (!b || b.state === state) return;
    b.state = state;
    if (detail !== undefined) b.detail = detail;
    if (FINAL.has(state)) logger.info({ campaignId: c.id, deviceId: id, state, detail }, `OTA board ${state}`);
    changed(c, 'board', id);
    if (BAD.has(state)) checkFailures(c);
    advance(c);
  };

  const checkFailures = (c: Campaign) => {
    if (c.state !== 'running') return;
    const done = Object.values(c.boards).filter((b) => FINAL.has(b.state));
    const bad = done.filter((b) => BAD.has(b.state)).length;
    const limit = failureLimit(c.maxFailures);
    const over = 'share' in limit ? bad / Math.max(1, done.length) > limit.share : bad > limit.count;
    if (!over) return;
    c.state = 'paused';
    c.reason = `failures ${bad} of ${done.length} boards with an outcome exceed ${c.maxFailures}`;
    logger.warn({ campaignId: c.id, wave: c.wave, failures: bad }, `OTA campaign paused by itself: ${c.reason}`);
    changed(c, 'paused');
  };

  const imageOf = async (c: Campaign) => {
    let image = images.get(c.imageId);
    if (!image) {
      image = await o.store.get(c.imageId);
      images.set(c.imageId, image);
    }
    return image;
  };

  const sendTo = (c: Campaign, id: string) => {
    const b = c.boards[id];
    const image = images.get(c.imageId);
    if (!b || !image || c.state !== 'running' || b.wave > c.wave || b.state !== 'pending') return;
    if (!o.isOnline(id)) return;
    try {
      b.commandId = o.send(id, image);
      b.sentAtMs = o.now();
      b.resultOk = false;
      setBoard(c, id, 'sent');
    } catch (err) {
      logger.info(
        { campaignId: c.id, deviceId: id, code: (err as HubError).code },
        'OTA command not sent; kept pending',
      );
    }
  };

  // advance() runs again (not nested) when a board change inside it asks for it.
  const advancing = new Set<string>();
  const rerun = new Set<string>();
  const advance = (c: Campaign) => {
    if (advancing.has(c.id)) {
      rerun.add(c.id);
      return;
    }
    advancing.add(c.id);
    try {
      do {
        rerun.delete(c.id);
        advanceOnce(c);
      } while (rerun.has(c.id));
    } finally {
      advancing.delete(c.id);
    }
  };

  /** Sends the current wave's pending online boards; moves to the next wave when this one is done. */
  const advanceOnce = (c: Campaign) => {
    if (c.state !== 'running') return;
    const ids = Object.keys(c.boards);
    for (;;) {
      for (const id of ids) if (c.boards[id]?.wave === c.wave) sendTo(c, id);
      if (c.state !== 'running') return;
      const inWave = ids.filter((id) => (c.boards[id]?.wave ?? 0) <= c.wave).map((id) => c.boards[id] as CampaignBoard);
      // Offline pending boards do not hold the wave: they get the command when they return.
      const busy = inWave.some((b) => b.state === 'sent' || b.state === 'downloading');
      if (busy) return;
      if (c.wave + 1 < c.waveEnds.length) {
        c.wave++;
        logger.info({ campaignId: c.id, wave: c.wave }, 'OTA campaign: next wave');
        changed(c, 'wave');
        continue;
      }
      if (inWave.every((b) => FINAL.has(b.state))) {
        c.state = 'completed';
        logger.info({ campaignId: c.id }, 'OTA campaign completed');
        changed(c, 'completed');
      }
      return;
    }
  };

  const onCommand = (u: {
    deviceId: string;
    commandId: number;
    name: string;
    state: string;
    status?: number;
    message?: string;
  }) => {
    if (u.name !== 'ota') return;
    for (const c of campaigns.values()) {
      const b = c.boards[u.deviceId];
      if (!b || b.commandId !== u.commandId || FINAL.has(b.state)) continue;
      if (u.state === 'accepted' && b.state === 'sent') setBoard(c, u.deviceId, 'downloading');
      else if (u.state === 'done') {
        b.resultOk = true;
        if (b.state === 'sent') setBoard(c, u.deviceId, 'downloading');
        else save();
      } else if (u.state === 'failed') setBoard(c, u.deviceId, 'failed', u.message ?? `status ${u.status}`);
    }
  };

  const onOnline = (info: { deviceId: string; firmwareVersion: string }) => {
    for (const c of campaigns.values()) {
      const b = c.boards[info.deviceId];
      if (!b) continue;
      b.version = info.firmwareVersion;
      // A late success still counts: the HELLO is the board's word (the campaign's state stays).
      if (b.state === 'timed_out' && info.firmwareVersion === c.version) {
        setBoard(c, info.deviceId, 'succeeded', 'after its timeout');
        continue;
      }
      if (c.state === 'aborted' || FINAL.has(b.state)) continue;
      if (b.state === 'sent' || b.state === 'downloading') {
        if (info.firmwareVersion === c.version) setBoard(c, info.deviceId, 'succeeded');
        else if (b.resultOk) setBoard(c, info.deviceId, 'rolled_back', `came back with ${info.firmwareVersion}`);
        else {
          // Restarted before it finished (power cut, reset): send it again.
          setBoard(c, info.deviceId, 'pending');
        }
      } else if (b.state === 'pending' && info.firmwareVersion === c.version) {
        setBoard(c, info.deviceId, 'succeeded', 'already on this version');
      }
    }
    // The command goes out once the session is fully up.
    setImmediate(() => {
      for (const c of campaigns.values()) sendTo(c, info.deviceId);
    });
  };

  const sweep = () => {
    const t = o.now();
    for (const c of campaigns.values()) {
      if (c.state === 'aborted' || c.state === 'completed') continue;
      for (const [id, b] of Object.entries(c.boards)) {
        if ((b.state === 'sent' || b.state === 'downloading') && t - (b.sentAtMs ?? t) > o.resultTimeoutMs) {
          setBoard(c, id, 'timed_out', `no outcome within ${Math.round(o.resultTimeoutMs / 1000)} s`);
        }
      }
    }
  };
  const timer = setInterval(sweep, Math.min(5000, Math.max(100, o.resultTimeoutMs / 10)));
  timer.unref();
  o.bus.on('command:update', onCommand);
  o.bus.on('device:online', onOnline);
  gauge();
  // After a restart: running campaigns continue (their images are loaded first).
  for (const c of campaigns.values()) {
    if (c.state === 'running' || c.state === 'paused') {
      void imageOf(c).then(
        () => advance(c),
        (err) => logger.error({ err, campaignId: c.id }, 'OTA campaign image is gone'),
      );
    }
  }

  const find = (id: string) => {
    const c = campaigns.get(id);
    if (!c) throw new HubError('NOT_FOUND', `no OTA campaign ${id}`);
    return c;
  };

  return {
    async start(spec) {
      const image = await o.store.get(spec.imageId);
      images.set(image.id, image);
      let target: Campaign['target'] = { kind: 'all' };
      let ids: string[];
      if (spec.devices && spec.group) throw new HubError('BAD_REQUEST', 'give devices or group, not both');
      if (spec.devices) {
        target = { kind: 'list', devices: [...new Set(spec.devices)] };
        ids = target.devices;
      } else if (spec.group) {
        target = { kind: 'group', glob: spec.group };
        const re = globRe(spec.group);
        ids = o.knownDevices().filter((d) => re.test(d));
      } else {
        ids = o.knownDevices();
      }
      if (ids.length === 0) throw new HubError('BAD_REQUEST', 'the campaign targets no board');
      if (campaigns.size >= MAX_CAMPAIGNS) {
        const oldest = [...campaigns.values()]
          .filter((x) => x.state === 'completed' || x.state === 'aborted')
          .sort((a, b) => a.createdAtMs - b.createdAtMs)[0];
        if (!oldest) {
          throw new HubError('BAD_REQUEST', `${MAX_CAMPAIGNS} campaigns are unfinished: finish or abort one first`);
        }
        campaigns.delete(oldest.id);
        logger.info({ campaignId: oldest.id }, 'OTA campaign forgotten (the oldest finished one, to keep the bound)');
      }
      ids.sort();
      const waves = spec.waves ?? '1,10%,100%';
      const maxFailures = spec.maxFailures ?? '10%';
      failureLimit(maxFailures);
      const waveEnds = parseWaves(waves, ids.length);
      const boards: Record<string, CampaignBoard> = {};
      ids.forEach((id, i) => {
        boards[id] = { state: 'pending', wave: waveEnds.findIndex((end) => i < end) };
      });
      const t = o.now();
      const c: Campaign = {
        id: randomBytes(6).toString('hex'),
        imageId: image.id,
        version: image.version,
        target,
        waves,
        waveEnds,
        wave: 0,
        maxFailures,
        state: 'running',
        reason: null,
        createdAtMs: t,
        updatedAtMs: t,
        boards,
      };
      campaigns.set(c.id, c);
      logger.info(
        { campaignId: c.id, imageId: image.id, version: image.version, boards: ids.length, waves: waveEnds },
        'OTA campaign started',
      );
      changed(c, 'started');
      advance(c);
      return c;
    },
    list: () => [...campaigns.values()],
    get: find,
    pause(id) {
      const c = find(id);
      if (c.state !== 'running') throw new HubError('BAD_REQUEST', `the campaign is ${c.state}`);
      c.state = 'paused';
      c.reason = 'paused by the operator';
      logger.info({ campaignId: id }, 'OTA campaign paused by the operator');
      changed(c, 'paused');
      return c;
    },
    resume(id) {
      const c = find(id);
      if (c.state !== 'paused') throw new HubError('BAD_REQUEST', `the campaign is ${c.state}`);
      c.state = 'running';
      c.reason = null;
      logger.info({ campaignId: id }, 'OTA campaign resumed');
      changed(c, 'resumed');
      void imageOf(c).then(() => advance(c));
      return c;
    },
    abort(id) {
      const c = find(id);
      if (c.state === 'completed' || c.state === 'aborted')
        throw new HubError('BAD_REQUEST', `the campaign is ${c.state}`);
      c.state = 'aborted';
      c.reason = 'aborted by the operator';
      logger.info({ campaignId: id }, 'OTA campaign aborted');
      changed(c, 'aborted');
      return c;
    },
    async stop() {
      clearInterval(timer);
      o.bus.off('command:update', onCommand);
      o.bus.off('device:online', onOnline);
      await writing;
    },
  };
}
