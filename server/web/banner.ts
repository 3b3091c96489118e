/**
 * The hub-down banner: when the live connection is lost (hub stopped, network down, session refused)
 * a banner across the page says so and that what it shows is no longer live; it goes when the
 * connection is back. Everything on the page stays readable meanwhile (marked stale by the banner).
 */
import { h } from './dom.ts';
import type { ConnectionState } from './live-client.ts';

export interface Banner {
  update(state: ConnectionState, detail: string): void;
}

export function hubDownBanner(parent: HTMLElement, before: Element | null): Banner {
  const text = h('span', { class: 'text' });
  const el = h('div', { class: 'hub-down', id: 'hub-down', role: 'alert' }, text);
  el.hidden = true;
  parent.insertBefore(el, before);
  let everLive = false;
  return {
    update(state, detail) {
      if (state === 'live' || state === 'behind') {
        everLive = true;
        el.hidden = true;
        document.body.dataset.hub = 'up';
        return;
      }
      // 'connecting' right after a loss still means down; before the first connection it is normal.
      if (state === 'connecting' && !everLive) return;
      el.hidden = false;
      document.body.dataset.hub = 'down';
      text.textContent = `The hub is unreachable: values shown are not live. ${detail ? `Retrying (${detail}).` : 'Retrying…'}`;
    },
  };
}
