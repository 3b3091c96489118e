/**
 * Fleet view: every device as a card with its presence, firmware, last seen, and per channel the
 * latest value with a sparkline. Subscribes to the fleet in `latest` mode (one sample per channel per
 * tick is all a card shows); the sparkline trail comes from `GET /api/devices` first.
 */
import type { ServerMessage } from '../live/messages.ts';
import type { ChannelView, DeviceView, Sample } from '../live/state.ts';
import { getDevices } from './api.ts';
import { ago, formatValue, h, reasonText } from './dom.ts';
import type { LiveConnection } from './live-client.ts';
import { Sparkline } from './sparkline.ts';

export interface View {
  destroy(): void;
}

interface ChannelRow {
  key: string;
  unit: string;
  last: Sample | null;
  row: HTMLLIElement;
  value: HTMLSpanElement;
  spark: Sparkline;
  dirty: boolean;
}

interface Card {
  id: string;
  device: Pick<DeviceView, 'state' | 'reason' | 'sinceMs' | 'lastSeenMs' | 'firmwareVersion' | 'bootId'>;
  el: HTMLElement;
  badge: HTMLSpanElement;
  meta: HTMLParagraphElement;
  list: HTMLUListElement;
  channels: Map<string, ChannelRow>;
  dirty: boolean;
}

const SUB = 'fleet';

export function fleetView(root: HTMLElement, live: LiveConnection): View {
  const cards = new Map<string, Card>();
  const summary = h('p', { class: 'summary' }, 'Waiting for devices…');
  const grid = h('div', { class: 'grid', id: 'fleet' });
  root.replaceChildren(h('h1', {}, 'Fleet'), summary, grid);
  let frame = 0;
  let destroyed = false;

  const schedule = (): void => {
    if (frame === 0 && !destroyed) frame = requestAnimationFrame(render);
  };

  const card = (id: string): Card => {
    let c = cards.get(id);
    if (c) return c;
    const badge = h('span', { class: 'badge' });
    const meta = h('p', { class: 'meta' });
    const list = h('ul', { class: 'channels' });
    const el = h(
      'article',
      { class: 'card', 'data-device': id },
      h('header', {}, h('a', { class: 'device-link', href: `#/device/${encodeURIComponent(id)}` }, id), badge),
      meta,
      list,
    );
    c = {
      id,
      device: {
        state: 'offline',
        reason: 'never_seen',
        sinceMs: 0,
        lastSeenMs: null,
        firmwareVersion: null,
        bootId: null,
      },
      el,
      badge,
      meta,
      list,
      channels: new Map(),
      dirty: true,
    };
    cards.set(id, c);
    // Keep cards sorted by id.
    const after = [...cards.keys()].sort().find((k) => k > id);
    const next = after ? cards.get(after)?.el : undefined;
    if (next) grid.insertBefore(el, next);
    else grid.append(el);
    return c;
  };

  const channel = (c: Card, key: string, unit: string): ChannelRow => {
    let ch = c.channels.get(key);
    if (ch) {
      if (unit) ch.unit = unit;
      return ch;
    }
    const value = h('span', { class: 'val' }, '—');
    const spark = new Sparkline();
    const row = h('li', { 'data-channel': key }, h('span', { class: 'key' }, key), value);
    row.append(spark.el);
    ch = { key, unit, last: null, row, value, spark, dirty: true };
    c.channels.set(key, ch);
    // Order of first appearance: the descriptor order (the hub keeps channels in that order).
    c.list.append(row);
    return ch;
  };

  const applyDevice = (d: DeviceView, withTrail: boolean): void => {
    const c = card(d.id);
    // The REST answer and the snapshot may cross a presence message on the wire: keep the newest.
    if (d.sinceMs >= c.device.sinceMs) c.device = d;
    c.dirty = true;
    for (const chv of d.channels) applyChannel(c, chv, withTrail);
    schedule();
  };

  const applyChannel = (c: Card, chv: ChannelView, withTrail: boolean): void => {
    const ch = channel(c, chv.key, chv.unit);
    if (withTrail && chv.trail) ch.spark.push(chv.trail);
    if (chv.last && (!ch.last || chv.last[0] >= ch.last[0])) {
      ch.last = chv.last;
      ch.spark.push([chv.last]);
    }
    ch.dirty = true;
  };

  const onMessage = (m: ServerMessage): void => {
    switch (m.type) {
      case 'snapshot':
        if (m.sub === SUB) for (const d of m.devices) applyDevice(d, false);
        break;
      case 'data':
        for (const [id, channels] of Object.entries(m.updates)) {
          const c = card(id);
          for (const [key, samples] of Object.entries(channels)) {
            const ch = channel(c, key, '');
            const last = samples[samples.length - 1];
            if (last && (!ch.last || last[0] >= ch.last[0])) ch.last = last;
            ch.spark.push(samples);
            ch.dirty = true;
          }
          c.device.lastSeenMs = Date.now();
          c.dirty = true;
        }
        schedule();
        break;
      case 'presence': {
        const c = card(m.device);
        c.device = { ...c.device, ...m };
        c.dirty = true;
        schedule();
        break;
      }
      case 'channels': {
        const c = card(m.device);
        for (const meta of m.channels) channel(c, meta.key, meta.unit).dirty = true;
        schedule();
        break;
      }
      default:
        break;
    }
  };

  function render(): void {
    frame = 0;
    const now = Date.now();
    const counts = { online: 0, stale: 0, offline: 0 };
    for (const c of cards.values()) {
      counts[c.device.state]++;
      if (c.dirty) {
        c.dirty = false;
        c.el.dataset.state = c.device.state;
        c.badge.className = `badge state-${c.device.state}`;
        c.badge.textContent = c.device.state;
        c.badge.title = reasonText(c.device.reason);
      }
      const fw = c.device.firmwareVersion ? `fw ${c.device.firmwareVersion}` : 'fw ?';
      const why = c.device.state === 'online' ? '' : ` · ${reasonText(c.device.reason)}`;
      c.meta.textContent = `${fw} · seen ${ago(c.device.lastSeenMs, now)}${why}`;
      for (const ch of c.channels.values()) {
        if (!ch.dirty) continue;
        ch.dirty = false;
        ch.value.textContent = formatValue(ch.last ? ch.last[1] : null, ch.unit);
        ch.spark.render();
      }
    }
    summary.textContent =
      cards.size === 0
        ? 'No devices yet. Start the simulator: npm run sim'
        : `${cards.size} device${cards.size === 1 ? '' : 's'} · ${counts.online} online · ${counts.stale} stale · ${counts.offline} offline`;
  }

  const off = live.onMessage(onMessage);
  live.subscribe(SUB, { mode: 'latest' });
  // "Seen … ago" ages even when nothing arrives.
  const ticker = window.setInterval(schedule, 1000);
  getDevices()
    .then((devices) => {
      if (destroyed) return;
      for (const d of devices) applyDevice(d, true);
      render();
    })
    .catch((err: unknown) => {
      summary.textContent = `Could not load devices: ${(err as Error).message}`;
    });

  return {
    destroy() {
      destroyed = true;
      off();
      live.unsubscribe(SUB);
      window.clearInterval(ticker);
      if (frame) cancelAnimationFrame(frame);
    },
  };
}
