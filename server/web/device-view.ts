/**
 * Device view: presence and identity, command buttons (identify, set sample interval) with their
 * results as they arrive on the live connection, and a live uPlot chart per channel backfilled from
 * the history route. Subscribes to the device in `all` mode so the charts get every sample.
 */
import uPlot from 'uplot';
import type { CommandMessage, ServerMessage } from '../live/messages.ts';
import type { DeviceView, Sample } from '../live/state.ts';
import { type CommandArgs, getDevice, getHistory, HttpError, type SessionInfo, sendCommand } from './api.ts';
import { ago, formatValue, h, reasonText } from './dom.ts';
import type { View } from './fleet-view.ts';
import type { LiveConnection } from './live-client.ts';

/** Window shown and kept per chart. */
const WINDOW_MS = 10 * 60_000;
/** Points kept per chart at most (oldest dropped first). */
const MAX_POINTS = 6000;
/** Narrowest time axis (s). */
const MIN_SPAN_S = 60;
const STATUS = ['ok', 'failed', 'unsupported', 'bad arguments', 'busy'];

interface Chart {
  key: string;
  unit: string;
  section: HTMLElement;
  title: HTMLHeadingElement;
  latest: HTMLSpanElement;
  plotBox: HTMLDivElement;
  plot: uPlot | null;
  /** uPlot wants seconds on time axes. */
  xs: number[];
  ys: (number | null)[];
  lastMs: number;
  /** Live samples that arrived while the history request was in flight. */
  pending: Sample[] | null;
  dirty: boolean;
}

export function deviceView(root: HTMLElement, live: LiveConnection, deviceId: string, session: SessionInfo): View {
  const sub = `device:${deviceId}`.slice(0, 64);
  const charts = new Map<string, Chart>();
  let device: Pick<DeviceView, 'state' | 'reason' | 'sinceMs' | 'lastSeenMs' | 'firmwareVersion' | 'bootId'> = {
    state: 'offline',
    reason: 'never_seen',
    sinceMs: 0,
    lastSeenMs: null,
    firmwareVersion: null,
    bootId: null,
  };
  let destroyed = false;
  let frame = 0;

  const badge = h('span', { class: 'badge', id: 'device-state' });
  const meta = h('p', { class: 'meta', id: 'device-meta' });
  const chartsBox = h('div', { class: 'charts', id: 'charts' });
  const results = h('ol', { class: 'results', id: 'command-results', reversed: true });
  const intervalInput = h('input', {
    id: 'interval-ms',
    type: 'number',
    min: '100',
    max: '3600000',
    step: '100',
    value: '1000',
    inputmode: 'numeric',
    'aria-label': 'Sample interval in milliseconds',
  });
  const identifyBtn = h('button', { type: 'button', id: 'identify' }, 'Identify');
  const intervalBtn = h('button', { type: 'button', id: 'set-interval' }, 'Set interval');
  const commandsNote = session.commands
    ? null
    : h(
        'p',
        { class: 'note' },
        session.mode === 'password' || session.role === 'viewer'
          ? 'Read-only session: log in with the admin token to send commands.'
          : 'Commands are not available on this hub.',
      );
  if (!session.commands) {
    identifyBtn.disabled = true;
    intervalBtn.disabled = true;
    intervalInput.disabled = true;
  }
  const commandsBox = h(
    'section',
    { class: 'commands', 'aria-label': 'Commands' },
    h(
      'div',
      { class: 'buttons' },
      identifyBtn,
      h('span', { class: 'interval' }, intervalInput, h('span', {}, 'ms')),
      intervalBtn,
    ),
    commandsNote,
    results,
  );
  root.replaceChildren(
    h('h1', { class: 'device-title' }, h('span', { class: 'device-id' }, deviceId), badge),
    meta,
    commandsBox,
    chartsBox,
  );

  const schedule = (): void => {
    if (frame === 0 && !destroyed) frame = requestAnimationFrame(render);
  };

  // ── commands ──
  const resultRows = new Map<number, HTMLLIElement>();
  const resultRow = (commandId: number, name: string): HTMLLIElement => {
    let li = resultRows.get(commandId);
    if (!li) {
      li = h('li', { 'data-command-id': String(commandId), 'data-state': 'sent' }, `${name} #${commandId}: sent`);
      resultRows.set(commandId, li);
      results.prepend(li);
      while (results.children.length > 20) results.lastElementChild?.remove();
    }
    return li;
  };
  const showCommand = (m: CommandMessage): void => {
    const li = resultRow(m.commandId, m.name);
    li.dataset.state = m.state;
    let text: string = m.state;
    if (m.state === 'done') text = `done: ${STATUS[m.status ?? 1] ?? `status ${m.status}`}`;
    if (m.message) text += ` — ${m.message}`;
    li.textContent = `${m.name} #${m.commandId}: ${text}`;
    if (m.state === 'done') li.dataset.status = String(m.status ?? '');
  };
  const run = async (name: string, args: CommandArgs, button: HTMLButtonElement): Promise<void> => {
    button.disabled = true;
    try {
      const id = await sendCommand(deviceId, name, args);
      if (!destroyed) resultRow(id, name);
    } catch (err) {
      const li = h('li', { 'data-state': 'failed' }, `${name}: ${(err as Error).message}`);
      results.prepend(li);
    } finally {
      button.disabled = false;
    }
  };
  identifyBtn.addEventListener('click', () => {
    void run('identify', { duration_ms: 3000 }, identifyBtn);
  });
  intervalBtn.addEventListener('click', () => {
    const ms = Math.round(Number(intervalInput.value));
    if (!Number.isFinite(ms) || ms < 100 || ms > 3_600_000) {
      intervalInput.setCustomValidity('100 to 3600000 ms');
      intervalInput.reportValidity();
      return;
    }
    intervalInput.setCustomValidity('');
    void run('set_sample_interval', { interval_ms: ms }, intervalBtn);
  });

  // ── charts ──
  const chart = (key: string, unit: string): Chart => {
    let c = charts.get(key);
    if (c) {
      if (unit && !c.unit) {
        c.unit = unit;
        c.title.textContent = `${key} (${unit})`;
      }
      return c;
    }
    const title = h('h2', {}, unit ? `${key} (${unit})` : key);
    const latest = h('span', { class: 'latest' }, '—');
    const plotBox = h('div', { class: 'plot' });
    const section = h(
      'section',
      { class: 'chart', 'data-channel': key, 'data-points': '0' },
      h('header', {}, title, latest),
      plotBox,
    );
    c = { key, unit, section, title, latest, plotBox, plot: null, xs: [], ys: [], lastMs: 0, pending: [], dirty: true };
    charts.set(key, c);
    chartsBox.append(section); // descriptor order, as the hub lists channels
    void backfill(c);
    return c;
  };

  const append = (c: Chart, samples: readonly Sample[]): void => {
    for (const [t, v] of samples) {
      if (t <= c.lastMs) continue; // the snapshot's latest value may repeat in history
      c.xs.push(t / 1000);
      c.ys.push(typeof v === 'boolean' ? (v ? 1 : 0) : v);
      c.lastMs = t;
    }
    const cutoff = c.lastMs / 1000 - WINDOW_MS / 1000;
    let drop = 0;
    while (drop < c.xs.length && ((c.xs[drop] as number) < cutoff || c.xs.length - drop > MAX_POINTS)) drop++;
    if (drop > 0) {
      c.xs.splice(0, drop);
      c.ys.splice(0, drop);
    }
    c.dirty = true;
  };

  const backfill = async (c: Chart): Promise<void> => {
    const to = Date.now();
    try {
      const history = await getHistory(deviceId, c.key, to - WINDOW_MS, to);
      if (destroyed) return;
      append(c, history);
    } catch (err) {
      // No history route (or no history yet): the chart starts from live data.
      if (!(err instanceof HttpError)) console.warn('history', err);
    }
    const pending = c.pending ?? [];
    c.pending = null;
    append(c, pending);
    schedule();
  };

  const live_ = (key: string, samples: readonly Sample[]): void => {
    const c = chart(key, '');
    if (c.pending) {
      for (const s of samples) c.pending.push(s);
      // Bounded while history loads.
      if (c.pending.length > MAX_POINTS) c.pending.splice(0, c.pending.length - MAX_POINTS);
    } else append(c, samples);
    const last = samples[samples.length - 1];
    if (last) c.latest.textContent = formatValue(last[1], c.unit);
    c.dirty = true;
  };

  const plotFor = (c: Chart): uPlot => {
    if (c.plot) return c.plot;
    const width = Math.max(240, c.plotBox.clientWidth);
    const axis = {
      stroke: '#8b949e',
      grid: { stroke: 'rgba(139,148,158,0.15)' },
      ticks: { stroke: 'rgba(139,148,158,0.3)' },
    };
    const opts: uPlot.Options = {
      width,
      height: 180,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true },
        y: { range: (_u, min, max) => (min === max ? [min - 1, max + 1] : [min, max]) },
      },
      series: [
        {},
        { label: c.key, stroke: '#1f6feb', width: 1.5, fill: 'rgba(31,111,235,0.08)', points: { show: false } },
      ],
      axes: [axis, { ...axis, size: axisWidth }],
    };
    c.plot = new uPlot(opts, [c.xs, c.ys], c.plotBox);
    return c.plot;
  };

  const resize = new ResizeObserver(() => {
    for (const c of charts.values()) c.plot?.setSize({ width: Math.max(240, c.plotBox.clientWidth), height: 180 });
  });
  resize.observe(chartsBox);

  function render(): void {
    frame = 0;
    const now = Date.now();
    badge.className = `badge state-${device.state}`;
    badge.textContent = device.state;
    badge.title = reasonText(device.reason);
    const parts = [
      device.firmwareVersion ? `firmware ${device.firmwareVersion}` : 'firmware ?',
      device.bootId !== null ? `boot ${device.bootId.toString(16).padStart(8, '0')}` : null,
      `seen ${ago(device.lastSeenMs, now)}`,
      `${device.state} since ${new Date(device.sinceMs || now).toLocaleTimeString()} (${reasonText(device.reason)})`,
    ];
    meta.textContent = parts.filter(Boolean).join(' · ');
    for (const c of charts.values()) {
      if (!c.dirty || c.pending) continue;
      c.dirty = false;
      c.section.dataset.points = String(c.xs.length);
      if (c.xs.length === 0) continue;
      const plot = plotFor(c);
      const max = c.xs[c.xs.length - 1] as number;
      // At least a minute wide, so a young chart (or a single point) does not stretch over the axis.
      const min = Math.min(c.xs[0] as number, max - MIN_SPAN_S);
      plot.batch(() => {
        plot.setData([c.xs, c.ys]);
        plot.setScale('x', { min, max });
      });
    }
  }

  const onMessage = (m: ServerMessage): void => {
    switch (m.type) {
      case 'snapshot':
        if (m.sub !== sub) return;
        for (const d of m.devices) {
          if (d.id !== deviceId) continue;
          device = d;
          for (const ch of d.channels) {
            const c = chart(ch.key, ch.unit);
            if (ch.last) live_(ch.key, [ch.last]);
            else c.dirty = true;
          }
        }
        schedule();
        return;
      case 'data': {
        const channels = m.updates[deviceId];
        if (!channels) return;
        for (const [key, samples] of Object.entries(channels)) live_(key, samples);
        device.lastSeenMs = Date.now();
        schedule();
        return;
      }
      case 'presence':
        if (m.device !== deviceId) return;
        device = { ...device, ...m };
        schedule();
        return;
      case 'channels':
        if (m.device !== deviceId) return;
        for (const ch of m.channels) chart(ch.key, ch.unit);
        schedule();
        return;
      case 'command':
        if (m.device === deviceId) showCommand(m);
        return;
      default:
        return;
    }
  };

  const off = live.onMessage(onMessage);
  live.subscribe(sub, { device: deviceId, mode: 'all' });
  const ticker = window.setInterval(schedule, 1000);
  getDevice(deviceId)
    .then((d) => {
      if (destroyed) return;
      if (d.sinceMs >= device.sinceMs) device = d;
      for (const ch of d.channels) chart(ch.key, ch.unit);
      schedule();
    })
    .catch((err: unknown) => {
      if (err instanceof HttpError && err.status === 404) meta.textContent = 'This device has not been seen yet.';
    });

  return {
    destroy() {
      destroyed = true;
      off();
      live.unsubscribe(sub);
      window.clearInterval(ticker);
      resize.disconnect();
      if (frame) cancelAnimationFrame(frame);
      for (const c of charts.values()) c.plot?.destroy();
    },
  };
}

/** The y axis as wide as its longest label (uPlot's recipe), so 6-digit values are not clipped. */
function axisWidth(u: uPlot, values: string[], axisIdx: number, cycleNum: number): number {
  const axis = u.axes[axisIdx] as uPlot.Axis & { _size?: number };
  if (cycleNum > 1 && axis._size !== undefined) return axis._size;
  let longest = '';
  for (const v of values ?? []) if (v.length > longest.length) longest = v;
  // uPlot keeps the resolved font as [css, size, ...] at run time; the typings say string.
  const font = Array.isArray(axis.font) ? (axis.font[0] as string) : (axis.font ?? '12px system-ui');
  u.ctx.font = font;
  const ticks = (axis.ticks?.size ?? 10) + (axis.gap ?? 5);
  return Math.ceil(ticks + u.ctx.measureText(longest).width / devicePixelRatio) + 4;
}
