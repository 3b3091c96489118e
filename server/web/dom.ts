/** Tiny DOM helpers: elements are built with textContent only (no HTML strings, nothing to escape). */

type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === 'class') el.className = String(v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

export { formatValue } from './format.ts';

/** "3 s ago", "5 min ago", or a date for old times. */
export function ago(timeMs: number | null, nowMs: number): string {
  if (timeMs === null) return 'never';
  const s = Math.max(0, Math.round((nowMs - timeMs) / 1000));
  if (s < 2) return 'just now';
  if (s < 90) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m} min ago`;
  const hours = Math.round(m / 60);
  if (hours < 36) return `${hours} h ago`;
  return new Date(timeMs).toLocaleString();
}

export const REASONS: Record<string, string> = {
  connected: 'connected',
  data_resumed: 'data resumed',
  no_data: 'no data for 3 sample periods',
  never_seen: 'not seen since the hub started',
  closed: 'connection closed',
  heartbeat: 'heartbeat lost',
  connection_lost: 'connection lost',
  slow_consumer: 'too slow to read the hub',
  replaced: 'replaced by a new connection',
  shutdown: 'hub shutting down',
};

export function reasonText(reason: string): string {
  return REASONS[reason] ?? reason.toLowerCase().replaceAll('_', ' ');
}
