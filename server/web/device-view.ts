/**
 * Device view: presence and identity, command buttons (identify, set sample interval) with their
 * results, a time-range picker (15 min … 7 days, or a custom range) and per channel a chart of the
 * range: the history route's downsampled buckets (min/mean/max per pixel column, one request for every
 * channel), lines broken at gaps (series.ts), bool channels as state timelines, and — for ranges that
 * end now — live samples folded into the same buckets as they arrive (subscription in `all` mode).
 * Channel names are operator-editable labels; the shown range exports as CSV; with GRAFANA_URL set
 * the device's Grafana dashboard is a link away.
 */
import uPlot from 'uplot';
import type { CommandMessage, ServerMessage } from '../live/messages.ts';
import type { Sample } from '../live/state.ts';
import {
  type CommandArgs,
  csvUrl,
  getDevice,
  getDownsampled,
  getLabels,
  HttpError,
  type SessionInfo,
  sendCommand,
  setLabel,
} from './api.ts';
import { ago, h, reasonText } from './dom.ts';
import { unseen } from './fleet-model.ts';
import type { View } from './fleet-view.ts';
import { defaultLabel, formatNumber, formatValue } from './format.ts';
import type { LiveConnection } from './live-client.ts';
import { BucketSeries, type Segment, toPlotData, toSegments } from './series.ts';

const STATUS = ['ok', 'failed', 'unsupported', 'bad arguments', 'busy'];

/** The picker's ranges (ms); `custom` takes two dates. */
export const RANGES: readonly { id: string; label: string; ms: number }[] = [
  { id: '15m', label: '15 min', ms: 15 * 60_000 },
  { id: '1h', label: '1 h', ms: 3600_000 },
  { id: '6h', label: '6 h', ms: 6 * 3600_000 },
  { id: '24h', label: '24 h', ms: 24 * 3600_000 },
  { id: '7d', label: '7 d', ms: 7 * 24 * 3600_000 },
];
const DEFAULT_RANGE = '1h';
const PLOT_HEIGHT = 180;
const TIMELINE_HEIGHT = 28;
const COLORS = { line: '#1f6feb', band: 'rgba(31,111,235,0.15)', on: '#2da44e', off: '#8b949e', mixed: '#d29922' };

interface Chart {
  key: string;
  unit: string;
  periodMs: number;
  section: HTMLElement;
  title: HTMLHeadingElement;
  latest: HTMLSpanElement;
  plotBox: HTMLDivElement;
  plot: uPlot | null;
  canvas: HTMLCanvasElement | null;
  series: BucketSeries | null;
  /** Live samples that arrived while the range was loading. */
  pending: Sample[];
  dirty: boolean;
}

interface Range {
  id: string;
  fromMs: number;
  toMs: number;
  /** Ranges that end now follow the clock and take live samples. */
  live: boolean;
}

export function deviceView(root: HTMLElement, live: LiveConnection, deviceId: string, session: SessionInfo): View {
  const sub = `device:${deviceId}`.slice(0, 64);
  const charts = new Map<string, Chart>();
  let labels: Record<string, string> = {};
  let device: ReturnType<typeof unseen> = unseen();
  let range: Range = relativeRange(DEFAULT_RANGE);
  let bucketMs = 1000;
  let loading = true;
  let loadSeq = 0;
  let destroyed = false;
  let frame = 0;

  const badge = h('span', { class: 'badge', id: 'device-state' });
  const meta = h('p', { class: 'meta', id: 'device-meta' });
  const chartsBox = h('div', { class: 'charts', id: 'charts', 'data-loaded-range': '' });
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
  const commandsNote = h('p', { class: 'note', id: 'commands-note' });
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

  // ── range picker, CSV, Grafana ──
  const picker = h('div', { class: 'ranges', role: 'group', 'aria-label': 'Time range', id: 'range-picker' });
  const rangeButtons = new Map<string, HTMLButtonElement>();
  for (const r of RANGES) {
    const b = h('button', { type: 'button', 'data-range': r.id }, r.label);
    b.addEventListener('click', () => select(relativeRange(r.id)));
    rangeButtons.set(r.id, b);
    picker.append(b);
  }
  const fromInput = h('input', { type: 'datetime-local', id: 'range-from', 'aria-label': 'From', step: '1' });
  const toInput = h('input', { type: 'datetime-local', id: 'range-to', 'aria-label': 'To', step: '1' });
  const customBtn = h('button', { type: 'button', 'data-range': 'custom', id: 'range-apply' }, 'Custom');
  customBtn.addEventListener('click', () => {
    const from = fromInput.valueAsNumber;
    const to = toInput.valueAsNumber;
    // datetime-local values are local wall time; valueAsNumber reads them as UTC.
    const offset = new Date().getTimezoneOffset() * 60_000;
    if (!Number.isFinite(from) || !Number.isFinite(to) || from >= to) {
      toInput.setCustomValidity('Pick a start before the end');
      toInput.reportValidity();
      return;
    }
    toInput.setCustomValidity('');
    select({ id: 'custom', fromMs: from + offset, toMs: to + offset, live: false });
  });
  rangeButtons.set('custom', customBtn);
  picker.append(h('span', { class: 'custom' }, fromInput, toInput, customBtn));
  const csvLink = h('a', { class: 'button', id: 'csv-export', download: '' }, 'Export CSV');
  const grafanaLink = session.grafana
    ? h('a', { class: 'button', id: 'grafana-link', target: '_blank', rel: 'noopener' }, 'Open in Grafana')
    : null;
  const toolbar = h('div', { class: 'toolbar' }, picker, h('span', { class: 'spacer' }), csvLink, grafanaLink);

  root.replaceChildren(
    h('h1', { class: 'device-title' }, h('span', { class: 'device-id' }, deviceId), badge),
    meta,
    commandsBox,
    toolbar,
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
  let busy = false;
  const run = async (name: string, args: CommandArgs): Promise<void> => {
    busy = true;
    schedule();
    try {
      const id = await sendCommand(deviceId, name, args);
      if (!destroyed) resultRow(id, name);
    } catch (err) {
      results.prepend(h('li', { 'data-state': 'failed' }, `${name}: ${(err as Error).message}`));
    } finally {
      busy = false;
      schedule();
    }
  };
  identifyBtn.addEventListener('click', () => {
    void run('identify', { duration_ms: 3000 });
  });
  intervalBtn.addEventListener('click', () => {
    const ms = Math.round(Number(intervalInput.value));
    if (!Number.isFinite(ms) || ms < 100 || ms > 3_600_000) {
      intervalInput.setCustomValidity('100 to 3600000 ms');
      intervalInput.reportValidity();
      return;
    }
    intervalInput.setCustomValidity('');
    void run('set_sample_interval', { interval_ms: ms });
  });

  // ── charts ──
  const labelOf = (key: string): string => labels[key] ?? defaultLabel(key);
  const titleText = (c: Chart): string => (c.unit ? `${labelOf(c.key)} (${c.unit})` : labelOf(c.key));

  const chart = (key: string, unit: string, periodMs = 0): Chart => {
    let c = charts.get(key);
    if (c) {
      if (unit && !c.unit) c.unit = unit;
      if (periodMs > 0) c.periodMs = periodMs;
      c.title.textContent = titleText(c);
      return c;
    }
    const title = h('h2', { class: 'channel-label' });
    const latest = h('span', { class: 'latest' }, '—');
    const rename = h('button', { type: 'button', class: 'rename', title: 'Rename this channel' }, 'Rename');
    rename.hidden = !session.commands;
    const plotBox = h('div', { class: 'plot' });
    const section = h(
      'section',
      { class: 'chart', 'data-channel': key, 'data-points': '0', 'data-nulls': '0' },
      h('header', {}, title, rename, latest),
      plotBox,
    );
    c = {
      key,
      unit,
      periodMs,
      section,
      title,
      latest,
      plotBox,
      plot: null,
      canvas: null,
      series: null,
      pending: [],
      dirty: true,
    };
    const created = c;
    title.textContent = titleText(c);
    rename.addEventListener('click', () => editLabel(created, rename));
    charts.set(key, c);
    chartsBox.append(section); // descriptor order, as the hub lists channels
    return c;
  };

  const editLabel = (c: Chart, button: HTMLButtonElement): void => {
    const input = h('input', {
      type: 'text',
      class: 'label-input',
      maxlength: '64',
      value: labels[c.key] ?? '',
      placeholder: defaultLabel(c.key),
      'aria-label': `Name of ${c.key}`,
    });
    const save = async (): Promise<void> => {
      try {
        const label = await setLabel(deviceId, c.key, input.value);
        if (label === null) delete labels[c.key];
        else labels[c.key] = label;
      } catch (err) {
        button.title = (err as Error).message;
      }
      input.replaceWith(c.title);
      c.title.textContent = titleText(c);
      button.hidden = false;
    };
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') void save();
      if (ev.key === 'Escape') {
        input.replaceWith(c.title);
        button.hidden = false;
      }
    });
    c.title.replaceWith(input);
    button.hidden = true;
    input.focus();
  };

  const liveSamples = (key: string, samples: readonly Sample[]): void => {
    const c = chart(key, '');
    const last = samples[samples.length - 1];
    if (last) c.latest.textContent = formatValue(last[1], c.unit);
    if (!range.live) return;
    if (loading) {
      for (const s of samples) c.pending.push(s);
      if (c.pending.length > 20_000) c.pending.splice(0, c.pending.length - 20_000);
      return;
    }
    c.series ??= new BucketSeries(range.fromMs, bucketMs, c.periodMs || null, typeof last?.[1] === 'boolean');
    for (const [t, v] of samples) c.series.add(t, v);
    c.dirty = true;
  };

  function select(r: Range): void {
    range = r;
    for (const [id, b] of rangeButtons) b.setAttribute('aria-pressed', String(id === r.id));
    void load();
  }

  /** Loads the range for every channel in one downsampled request, then appends what came live meanwhile. */
  async function load(): Promise<void> {
    const seq = ++loadSeq;
    loading = true;
    chartsBox.dataset.loadedRange = '';
    if (range.live) range = relativeRange(range.id);
    // One bucket per pixel column of a chart (charts share the width).
    const plotWidth = chartsBox.querySelector<HTMLElement>('.plot')?.clientWidth || chartsBox.clientWidth || 1000;
    const width = Math.min(8000, Math.max(240, Math.round(plotWidth)));
    for (const c of charts.values()) c.pending.length = 0;
    performance.mark('range-load-start');
    let answer: Awaited<ReturnType<typeof getDownsampled>> | null = null;
    try {
      answer = await getDownsampled(deviceId, range.fromMs, range.toMs, width);
    } catch (err) {
      if (!(err instanceof HttpError)) console.warn('history', err);
    }
    if (destroyed || seq !== loadSeq) return;
    bucketMs = answer?.bucketMs ?? Math.max(1, Math.ceil((range.toMs - range.fromMs + 1) / width));
    for (const c of charts.values()) c.series = null;
    for (const s of answer?.series ?? []) {
      const c = chart(s.channel, s.unit);
      c.series = BucketSeries.from(s, range.fromMs, bucketMs, c.periodMs);
    }
    loading = false;
    for (const c of charts.values()) {
      const pending = c.pending.splice(0);
      if (range.live && pending.length > 0) liveSamples(c.key, pending);
      c.dirty = true;
    }
    csvLink.href = csvUrl(deviceId, range.fromMs, range.toMs);
    if (grafanaLink && session.grafana) {
      const q = new URLSearchParams({ 'var-device': deviceId, from: String(range.fromMs), to: String(range.toMs) });
      grafanaLink.href = `${session.grafana.url}/d/${encodeURIComponent(session.grafana.deviceDashboardUid)}/?${q}`;
    }
    render();
    performance.mark('range-load-end');
    performance.measure('range-load', 'range-load-start', 'range-load-end');
    chartsBox.dataset.loadedRange = range.id;
  }

  const plotFor = (c: Chart): uPlot => {
    if (c.plot) return c.plot;
    c.canvas?.remove();
    c.canvas = null;
    const axis = {
      stroke: '#8b949e',
      grid: { stroke: 'rgba(139,148,158,0.15)' },
      ticks: { stroke: 'rgba(139,148,158,0.3)' },
    };
    const unit = c.unit;
    const opts: uPlot.Options = {
      width: Math.max(240, c.plotBox.clientWidth),
      height: PLOT_HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true },
        y: { range: (_u, min, max) => (min === max ? [min - 1, max + 1] : [min, max]) },
      },
      series: [
        {},
        { label: 'min', stroke: 'transparent', points: { show: false } },
        { label: 'max', stroke: 'transparent', points: { show: false } },
        { label: labelOf(c.key), stroke: COLORS.line, width: 1.5, points: { show: false } },
      ],
      // The band between max and min: the spread inside each pixel column.
      bands: [{ series: [2, 1], fill: COLORS.band }],
      axes: [axis, { ...axis, size: axisWidth, values: (_u, splits) => splits.map((v) => formatNumber(v, unit)) }],
    };
    c.plot = new uPlot(opts, [[], [], [], []], c.plotBox);
    return c.plot;
  };

  const timelineFor = (c: Chart): HTMLCanvasElement => {
    if (c.canvas) return c.canvas;
    c.plot?.destroy();
    c.plot = null;
    c.canvas = h('canvas', { class: 'timeline', height: String(TIMELINE_HEIGHT) });
    c.plotBox.replaceChildren(c.canvas);
    return c.canvas;
  };

  const drawTimeline = (c: Chart, segments: readonly Segment[]): void => {
    const canvas = timelineFor(c);
    const width = Math.max(240, c.plotBox.clientWidth);
    const ratio = window.devicePixelRatio || 1;
    canvas.style.width = `${width}px`;
    canvas.style.height = `${TIMELINE_HEIGHT}px`;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(TIMELINE_HEIGHT * ratio);
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, width, TIMELINE_HEIGHT);
    const span = range.toMs - range.fromMs || 1;
    const x = (t: number) => ((t - range.fromMs) / span) * width;
    for (const s of segments) {
      ctx.fillStyle = s.state === 1 ? COLORS.on : s.state === 0 ? COLORS.off : COLORS.mixed;
      const x0 = Math.max(0, x(s.fromMs));
      const x1 = Math.min(width, x(s.toMs));
      if (x1 > x0) ctx.fillRect(x0, 4, Math.max(1, x1 - x0), TIMELINE_HEIGHT - 8);
    }
    canvas.dataset.segments = String(segments.length);
    canvas.dataset.on = String(segments.filter((s) => s.state === 1).length);
    canvas.dataset.off = String(segments.filter((s) => s.state === 0).length);
  };

  const resize = new ResizeObserver(() => {
    for (const c of charts.values()) {
      c.plot?.setSize({ width: Math.max(240, c.plotBox.clientWidth), height: PLOT_HEIGHT });
      if (c.canvas) c.dirty = true;
    }
    schedule();
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
    // Commands need an operator and a connected board.
    const online = device.state !== 'offline';
    const allowed = session.commands && online && !busy;
    identifyBtn.disabled = !allowed;
    intervalBtn.disabled = !allowed;
    intervalInput.disabled = !session.commands || !online;
    commandsNote.textContent = !session.commands
      ? session.mode === 'password' || session.role === 'viewer'
        ? 'Read-only session: log in with the admin token to send commands.'
        : 'Commands are not available on this hub.'
      : online
        ? ''
        : 'The board is offline: commands are disabled until it reconnects.';
    commandsNote.hidden = commandsNote.textContent === '';
    root.dataset.deviceState = device.state;

    if (loading) return;
    if (range.live) {
      // The window follows the clock.
      range.toMs = now;
      range.fromMs = now - (RANGES.find((r) => r.id === range.id)?.ms ?? 3600_000);
    }
    for (const c of charts.values()) {
      const s = c.series;
      if (range.live && s) {
        const before = s.t.length;
        s.trimBefore(range.fromMs);
        if (s.t.length !== before) c.dirty = true;
      }
      if (!c.dirty && !range.live) continue;
      c.dirty = false;
      if (!s || s.t.length === 0) {
        c.section.dataset.points = '0';
        c.section.dataset.kind = s?.bool ? 'bool' : 'number';
        c.plot?.setData([[], [], [], []]);
        continue;
      }
      if (s.bool) {
        c.section.dataset.kind = 'bool';
        const segments = toSegments(s);
        drawTimeline(c, segments);
        c.section.dataset.points = String(s.t.length);
        const last = s.latest();
        if (c.latest.textContent === '—' && last !== null) c.latest.textContent = last >= 0.5 ? 'on' : 'off';
        continue;
      }
      c.section.dataset.kind = 'number';
      const plot = plotFor(c);
      const d = toPlotData(s);
      c.section.dataset.points = String(s.t.length);
      c.section.dataset.nulls = String(d.gaps);
      c.section.dataset.xMin = String(range.fromMs / 1000);
      c.section.dataset.xMax = String(range.toMs / 1000);
      if (c.latest.textContent === '—') c.latest.textContent = formatValue(s.latest(), c.unit);
      plot.batch(() => {
        plot.setData([d.xs, d.min, d.max, d.mean], false);
        plot.setScale('x', { min: range.fromMs / 1000, max: range.toMs / 1000 });
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
            chart(ch.key, ch.unit, ch.periodMs);
            if (ch.last) chart(ch.key, ch.unit).latest.textContent = formatValue(ch.last[1], ch.unit);
          }
        }
        schedule();
        return;
      case 'data': {
        const channels = m.updates[deviceId];
        if (!channels) return;
        for (const [key, samples] of Object.entries(channels)) liveSamples(key, samples);
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
        for (const ch of m.channels) chart(ch.key, ch.unit, ch.periodMs);
        schedule();
        return;
      case 'command':
        if (m.device === deviceId) showCommand(m);
        return;
      default:
        return;
    }
  };

  let off = (): void => {};
  // Re-render every second: "seen … ago" ages and live windows slide even when nothing arrives.
  const ticker = window.setInterval(schedule, 1000);
  Promise.all([getDevice(deviceId), getLabels().catch(() => ({}) as Record<string, Record<string, string>>)])
    .then(([d, all]) => {
      if (destroyed) return;
      labels = all[deviceId] ?? {};
      if (d.sinceMs >= device.sinceMs) device = d;
      for (const ch of d.channels) chart(ch.key, ch.unit, ch.periodMs);
      off = live.onMessage(onMessage);
      live.subscribe(sub, { device: deviceId, mode: 'all' });
      select(range);
    })
    .catch((err: unknown) => {
      if (destroyed) return;
      if (err instanceof HttpError && err.status === 404) {
        root.replaceChildren(
          h('h1', { class: 'device-title' }, h('span', { class: 'device-id' }, deviceId)),
          h(
            'p',
            { class: 'empty', id: 'no-such-device' },
            'No such device: the hub does not know this id. ',
            h('a', { href: '#/' }, 'Back to the fleet'),
          ),
        );
        document.title = 'No such device · ESP32 hub';
      } else meta.textContent = `Could not load the device: ${(err as Error).message}`;
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

function relativeRange(id: string): Range {
  const ms = RANGES.find((r) => r.id === id)?.ms ?? 3600_000;
  const now = Date.now();
  return { id, fromMs: now - ms, toMs: now, live: true };
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
