/**
 * Fleet view, built for 1,000 live boards: every device as a card (presence, firmware, last seen, per
 * channel the latest value with a sparkline) or as a row of a compact table; search (id or channel
 * name), a status filter and a sort (name, last seen, or a channel's value).
 *
 * It stays smooth with many boards because
 * - live messages only update the model (fleet-model.ts) and mark what changed;
 * - the DOM is touched once per animation frame, and only for the cards or rows on screen (a
 *   virtualized list: a tall spacer, the visible slice positioned inside it); off-screen devices cost
 *   no DOM at all, and a card's element is built the first time it scrolls into view;
 * - order and filter are recomputed when they can have changed (a new device, a new search, a sort
 *   on a changing value at most once a second), not per message.
 * Subscribes to the fleet in `latest` mode; the sparkline trail comes from `GET /api/devices` first.
 */
import type { ServerMessage } from '../live/messages.ts';
import type { DeviceView } from '../live/state.ts';
import { getDevices, getLabels, type SessionInfo, sendCommand } from './api.ts';
import { ago, h, reasonText } from './dom.ts';
import { type FleetDevice, FleetModel, type FleetQuery } from './fleet-model.ts';
import { defaultLabel, formatValue } from './format.ts';
import type { LiveConnection } from './live-client.ts';
import { Sparkline } from './sparkline.ts';

export interface View {
  destroy(): void;
}

const SUB = 'fleet';
const CARD_W = 300;
const CARD_H = 300;
const GAP = 12;
const ROW_H = 34;
/** Channels a card shows (the table shows up to TABLE_CHANNELS columns). */
const CARD_CHANNELS = 8;
const TABLE_CHANNELS = 6;
/** Rows rendered beyond the screen's edges, so a scroll never shows a blank. */
const OVERSCAN = 2;
/** A sort on a changing value (last seen, a channel) is refreshed at most this often, ms. */
const RESORT_MS = 1000;

interface Rendered {
  el: HTMLElement;
  /** Text last written per slot, so unchanged text is not written again. */
  texts: Map<string, string>;
  sparks: Map<string, Sparkline>;
  version: number;
}

export function fleetView(root: HTMLElement, live: LiveConnection, session?: SessionInfo): View {
  const model = new FleetModel();
  let labels: Record<string, Record<string, string>> = {};
  const query: FleetQuery = { search: '', status: 'all', sort: 'name' };
  let mode: 'cards' | 'table' = localStorage.getItem('fleet-mode') === 'table' ? 'table' : 'cards';
  let order: FleetDevice[] = [];
  let orderDirty = true;
  let sortedAt = 0;
  let frame = 0;
  let destroyed = false;
  const cards = new Map<string, Rendered>();
  const rows = new Map<string, Rendered>();
  let shown = new Set<string>();

  // ── controls ──
  const summary = h('p', { class: 'summary', id: 'fleet-summary' }, 'Waiting for devices…');
  const search = h('input', {
    type: 'search',
    id: 'fleet-search',
    placeholder: 'Search id or channel',
    'aria-label': 'Search devices',
  });
  const status = h(
    'select',
    { id: 'fleet-status', 'aria-label': 'Status' },
    ...['all', 'online', 'stale', 'offline'].map((s) => h('option', { value: s }, s === 'all' ? 'Any status' : s)),
  );
  const sort = h('select', { id: 'fleet-sort', 'aria-label': 'Sort by' });
  const modeBtn = h('button', { type: 'button', id: 'fleet-mode' });
  const controls = h('div', { class: 'fleet-controls' }, search, status, sort, modeBtn);
  const list = h('div', { class: 'vlist', id: 'fleet' });
  root.replaceChildren(h('h1', {}, 'Fleet'), summary, controls, list);

  const sortKeys = new Set<string>();
  const refreshSortOptions = (): void => {
    const keys = model.channelKeys();
    if (keys.length === sortKeys.size) return;
    const current = sort.value || query.sort;
    sort.replaceChildren(
      h('option', { value: 'name' }, 'Name'),
      h('option', { value: 'lastSeen' }, 'Last seen'),
      ...keys.map((k) => h('option', { value: `channel:${k}` }, `Channel: ${k}`)),
    );
    sortKeys.clear();
    for (const k of keys) sortKeys.add(k);
    sort.value = current;
  };
  refreshSortOptions();

  search.addEventListener('input', () => {
    query.search = search.value;
    orderDirty = true;
    schedule();
  });
  status.addEventListener('change', () => {
    query.status = status.value as FleetQuery['status'];
    orderDirty = true;
    schedule();
  });
  sort.addEventListener('change', () => {
    query.sort = sort.value;
    orderDirty = true;
    schedule();
  });
  modeBtn.addEventListener('click', () => {
    mode = mode === 'cards' ? 'table' : 'cards';
    localStorage.setItem('fleet-mode', mode);
    schedule();
  });
  window.addEventListener('scroll', onScroll, { passive: true });
  window.addEventListener('resize', onScroll, { passive: true });
  function onScroll(): void {
    schedule();
  }

  function schedule(): void {
    if (frame === 0 && !destroyed) frame = requestAnimationFrame(render);
  }

  const labelOf = (id: string, key: string): string => labels[id]?.[key] ?? defaultLabel(key);

  // ── one card / one row ──
  const buildCard = (d: FleetDevice): Rendered => {
    const el = h('article', { class: 'card', 'data-device': d.id });
    return { el, texts: new Map(), sparks: new Map(), version: -1 };
  };

  const setText = (r: Rendered, slot: string, el: Element, text: string): void => {
    if (r.texts.get(slot) === text) return;
    r.texts.set(slot, text);
    el.textContent = text;
  };

  const fillCard = (r: Rendered, d: FleetDevice, now: number): void => {
    const el = r.el;
    if (r.version !== d.version) {
      const fresh = r.version === -1 || el.childElementCount === 0;
      r.version = d.version;
      el.dataset.state = d.state;
      if (fresh || d.channelsChanged) {
        const badge = h('span', { class: 'badge' });
        const identify = h(
          'button',
          { type: 'button', class: 'identify', title: 'Blink the board for 3 s' },
          'Identify',
        );
        identify.hidden = !session?.commands;
        identify.addEventListener('click', () => {
          identify.disabled = true;
          sendCommand(d.id, 'identify', { duration_ms: 3000 })
            .catch(() => undefined)
            .finally(() => {
              identify.disabled = d.state === 'offline';
            });
        });
        const ul = h('ul', { class: 'channels' });
        const keys = [...d.channels.keys()];
        for (const key of keys.slice(0, CARD_CHANNELS)) {
          let spark = r.sparks.get(key);
          if (!spark) {
            spark = new Sparkline();
            r.sparks.set(key, spark);
          }
          ul.append(
            h(
              'li',
              { 'data-channel': key },
              h('span', { class: 'key' }, labelOf(d.id, key)),
              h('span', { class: 'val' }, '—'),
              spark.el,
            ),
          );
        }
        if (keys.length > CARD_CHANNELS) ul.append(h('li', { class: 'more' }, `+ ${keys.length - CARD_CHANNELS} more`));
        el.replaceChildren(
          h('header', {}, h('a', { class: 'device-link', href: `#/device/${encodeURIComponent(d.id)}` }, d.id), badge),
          h('p', { class: 'meta' }),
          ul,
          h('footer', {}, identify),
        );
        r.texts.clear();
        d.channelsChanged = false;
      }
      const badge = el.querySelector('.badge') as HTMLElement;
      setText(r, 'badge', badge, d.state);
      badge.className = `badge state-${d.state}`;
      badge.title = reasonText(d.reason);
      const identify = el.querySelector('.identify') as HTMLButtonElement;
      identify.disabled = d.state === 'offline';
      for (const li of Array.from(el.querySelectorAll<HTMLElement>('li[data-channel]'))) {
        const key = li.dataset.channel as string;
        const ch = d.channels.get(key);
        if (!ch) continue;
        setText(r, `v:${key}`, li.querySelector('.val') as Element, formatValue(ch.last ? ch.last[1] : null, ch.unit));
        const spark = r.sparks.get(key);
        if (spark?.push(ch.trail)) spark.render();
      }
    }
    const fw = d.firmwareVersion ? `fw ${d.firmwareVersion}` : 'fw ?';
    const why = d.state === 'online' ? '' : ` · ${reasonText(d.reason)}`;
    setText(r, 'meta', el.querySelector('.meta') as Element, `${fw} · seen ${ago(d.lastSeenMs, now)}${why}`);
  };

  const tableKeys = (): string[] => model.channelKeys().slice(0, TABLE_CHANNELS);

  const fillRow = (r: Rendered, d: FleetDevice, now: number, keys: readonly string[]): void => {
    const el = r.el;
    if (el.childElementCount !== 4 + keys.length) {
      el.replaceChildren(
        h(
          'span',
          { class: 'cell id' },
          h('a', { class: 'device-link', href: `#/device/${encodeURIComponent(d.id)}` }, d.id),
        ),
        h('span', { class: 'cell state' }, h('span', { class: 'badge' })),
        h('span', { class: 'cell seen' }),
        h('span', { class: 'cell fw' }),
        ...keys.map((k) => h('span', { class: 'cell num', 'data-channel': k })),
      );
      r.texts.clear();
    }
    el.dataset.state = d.state;
    const cells = el.children;
    const badge = (cells[1] as HTMLElement).firstElementChild as HTMLElement;
    setText(r, 'badge', badge, d.state);
    badge.className = `badge state-${d.state}`;
    badge.title = reasonText(d.reason);
    setText(r, 'seen', cells[2] as Element, ago(d.lastSeenMs, now));
    setText(r, 'fw', cells[3] as Element, d.firmwareVersion ?? '?');
    keys.forEach((k, i) => {
      const ch = d.channels.get(k);
      setText(r, `v:${k}`, cells[4 + i] as Element, ch ? formatValue(ch.last ? ch.last[1] : null, ch.unit) : '');
    });
  };

  // ── the frame ──
  function render(): void {
    frame = 0;
    const now = performance.now();
    const wall = Date.now();
    refreshSortOptions();
    const dynamicSort = query.sort !== 'name';
    if (orderDirty || model.added || (dynamicSort && now - sortedAt > RESORT_MS && model.changedSinceSort)) {
      order = model.select(query, labels);
      orderDirty = false;
      model.added = false;
      model.changedSinceSort = false;
      sortedAt = now;
    }
    modeBtn.textContent = mode === 'cards' ? 'Table' : 'Cards';
    modeBtn.setAttribute('aria-label', mode === 'cards' ? 'Show as a table' : 'Show as cards');
    list.dataset.mode = mode;

    // The visible slice of the virtual list.
    const width = list.clientWidth || window.innerWidth;
    const perRow = mode === 'cards' ? Math.max(1, Math.floor((width + GAP) / (CARD_W + GAP))) : 1;
    const rowH = mode === 'cards' ? CARD_H + GAP : ROW_H;
    const header = mode === 'table' ? ROW_H : 0;
    const totalRows = Math.ceil(order.length / perRow);
    list.style.height = `${header + totalRows * rowH}px`;
    const top = list.getBoundingClientRect().top;
    const firstRow = Math.max(0, Math.floor((-top - header) / rowH) - OVERSCAN);
    const lastRow = Math.min(totalRows - 1, Math.ceil((window.innerHeight - top - header) / rowH) + OVERSCAN);
    const next = new Set<string>();
    const keys = mode === 'table' ? tableKeys() : [];
    const pool = mode === 'cards' ? cards : rows;
    const cardW = mode === 'cards' ? (width - GAP * (perRow - 1)) / perRow : width;
    for (let row = firstRow; row <= lastRow; row++) {
      for (let col = 0; col < perRow; col++) {
        const d = order[row * perRow + col];
        if (!d) break;
        next.add(d.id);
        let r = pool.get(d.id);
        if (!r) {
          r =
            mode === 'cards'
              ? buildCard(d)
              : {
                  el: h('div', { class: 'trow', 'data-device': d.id }),
                  texts: new Map(),
                  sparks: new Map(),
                  version: -1,
                };
          pool.set(d.id, r);
        }
        if (mode === 'cards') fillCard(r, d, wall);
        else fillRow(r, d, wall, keys);
        const x = col * (cardW + GAP);
        const y = header + row * rowH;
        const transform = `translate(${Math.round(x)}px, ${y}px)`;
        if (r.el.style.transform !== transform) r.el.style.transform = transform;
        const w = `${Math.floor(cardW)}px`;
        if (r.el.style.width !== w) r.el.style.width = w;
        if (r.el.parentNode !== list) list.append(r.el);
      }
    }
    // Off screen (or the other mode's elements): detached, kept for when they come back.
    for (const id of shown) {
      if (next.has(id)) continue;
      cards.get(id)?.el.remove();
      rows.get(id)?.el.remove();
    }
    if (mode === 'cards') for (const r of rows.values()) r.el.remove();
    else for (const r of cards.values()) r.el.remove();
    shown = next;
    let head = list.querySelector<HTMLElement>('.thead');
    if (mode === 'table') {
      if (!head || head.dataset.keys !== keys.join(',')) {
        head?.remove();
        head = h(
          'div',
          { class: 'thead', 'data-keys': keys.join(',') },
          h('span', { class: 'cell id' }, 'Device'),
          h('span', { class: 'cell state' }, 'Status'),
          h('span', { class: 'cell seen' }, 'Last seen'),
          h('span', { class: 'cell fw' }, 'Firmware'),
          ...keys.map((k) => h('span', { class: 'cell num', 'data-channel': k }, defaultLabel(k))),
        );
        list.prepend(head);
      }
    } else head?.remove();
    const c = model.counts();
    summary.textContent =
      model.devices.size === 0
        ? 'No devices yet. Start the simulator: npm run sim'
        : `${model.devices.size} device${model.devices.size === 1 ? '' : 's'} · ${c.online} online · ${c.stale} stale · ${c.offline} offline` +
          (order.length === model.devices.size ? '' : ` · ${order.length} shown`);
    summary.dataset.shown = String(order.length);
    list.dataset.rendered = String(next.size);
  }

  const onMessage = (m: ServerMessage): void => {
    switch (m.type) {
      case 'snapshot':
        if (m.sub === SUB) for (const d of m.devices) model.apply(d as DeviceView, false);
        break;
      case 'data':
        model.data(m.updates, Date.now());
        break;
      case 'presence':
        model.presence(m);
        break;
      case 'channels':
        model.channels(m.device, m.channels);
        break;
      default:
        return;
    }
    schedule();
  };

  const off = live.onMessage(onMessage);
  live.subscribe(SUB, { mode: 'latest' });
  // "Seen … ago" ages even when nothing arrives.
  const ticker = window.setInterval(schedule, 1000);
  Promise.all([getDevices(), getLabels().catch(() => ({}))])
    .then(([devices, all]) => {
      if (destroyed) return;
      labels = all;
      for (const d of devices) model.apply(d, true);
      orderDirty = true;
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
      window.removeEventListener('scroll', onScroll);
      window.removeEventListener('resize', onScroll);
      if (frame) cancelAnimationFrame(frame);
    },
  };
}
