/**
 * The alert banner of the built-in page (docs/alerts.md §3): the hub's firing alerts under the
 * header, whatever view is open. On every (re)connection of the live socket (`hello`) it loads
 * `GET /api/alerts`, then follows the live `alert` messages; `seq` orders the two (a message newer
 * than the list wins), so nothing is lost or shown twice while they cross. Hidden when nothing fires.
 */
import type { AlertEvent } from '../alerts/types.ts';
import { ago, h } from './dom.ts';
import type { LiveConnection } from './live-client.ts';

/** Alerts listed one by one at most; the rest are counted. */
const MAX_SHOWN = 20;
const SEVERITY_ORDER: Record<AlertEvent['severity'], number> = { critical: 0, warning: 1, info: 2 };

interface AlertList {
  seq: number;
  alerts: AlertEvent[];
}

/** Mounts the banner right after `anchor` and keeps it current; returns a function that removes it. */
export function mountAlerts(anchor: Element, live: LiveConnection): () => void {
  const root = h('section', { class: 'alerts', 'aria-live': 'polite', 'aria-label': 'Alerts', hidden: true });
  anchor.after(root);
  const firing = new Map<string, AlertEvent>();
  /** Per alert: the seq of the newest transition applied (firing or resolved). */
  const seqOf = new Map<string, number>();
  let generation = 0;

  const keyOf = (e: AlertEvent) => `${e.rule}\u0000${e.device}`;
  const apply = (e: AlertEvent): void => {
    const key = keyOf(e);
    if ((seqOf.get(key) ?? 0) >= e.seq) return;
    seqOf.set(key, e.seq);
    if (e.state === 'firing') firing.set(key, e);
    else firing.delete(key);
  };

  const render = (): void => {
    const list = [...firing.values()].sort(
      (a, b) =>
        SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity] || b.firingSinceMs - a.firingSinceMs || b.seq - a.seq,
    );
    root.hidden = list.length === 0;
    if (list.length === 0) {
      root.replaceChildren();
      return;
    }
    const now = Date.now();
    const items = list
      .slice(0, MAX_SHOWN)
      .map((a) =>
        h(
          'li',
          { class: `alert sev-${a.severity}`, 'data-rule': a.rule, 'data-device': a.device },
          h('span', { class: 'sev' }, a.severity),
          ' ',
          h('a', { href: `#/device/${encodeURIComponent(a.device)}` }, a.device),
          ' ',
          h('span', { class: 'summary' }, a.rule === 'offline' ? a.summary : `${a.rule}: ${a.summary}`),
          ' ',
          h('span', { class: 'since', title: new Date(a.firingSinceMs).toISOString() }, ago(a.firingSinceMs, now)),
        ),
      );
    const more = list.length - items.length;
    const parts: Node[] = [
      h('h2', {}, `${list.length} alert${list.length === 1 ? '' : 's'} firing`),
      h('ul', {}, ...items),
    ];
    if (more > 0) parts.push(h('p', { class: 'more' }, `and ${more} more (GET /api/alerts lists them all)`));
    root.replaceChildren(...parts);
  };

  const load = async (): Promise<void> => {
    const mine = ++generation;
    let body: AlertList;
    try {
      const res = await fetch('/api/alerts', { credentials: 'same-origin' });
      if (!res.ok) return; // no access or an older hub: the live messages still show
      body = (await res.json()) as AlertList;
    } catch {
      return;
    }
    if (mine !== generation) return; // a newer connection's load supersedes this one
    // The list holds every alert up to its seq: forget older knowledge, keep newer live messages.
    for (const [key, seq] of seqOf) {
      if (seq > body.seq) continue;
      seqOf.delete(key);
      firing.delete(key);
    }
    for (const e of body.alerts) apply(e);
    render();
  };

  const off = live.onMessage((m) => {
    if (m.type === 'hello') {
      // A new connection (maybe to a restarted hub, whose seq starts again): start from its list.
      firing.clear();
      seqOf.clear();
      render();
      void load();
    } else if (m.type === 'alert') {
      apply(m);
      render();
    }
  });
  const timer = window.setInterval(render, 15_000); // keeps "… ago" current
  return () => {
    off();
    window.clearInterval(timer);
    root.remove();
  };
}
