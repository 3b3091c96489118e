/**
 * The page's connection to `/v1/live` (docs/live-api.md): reconnects with backoff and jitter,
 * re-sends its subscriptions after a reconnect, and hands every message to the current view.
 * Authentication is the session cookie the browser sends with the handshake (never a URL).
 */
import type { ServerMessage } from '../live/messages.ts';

export type ConnectionState = 'connecting' | 'live' | 'behind' | 'offline';

export interface SubscribeParams {
  device?: string;
  channels?: string[];
  mode?: 'latest' | 'all';
}

export class LiveConnection {
  #ws: WebSocket | null = null;
  #subs = new Map<string, SubscribeParams>();
  #listeners = new Set<(m: ServerMessage) => void>();
  #onState: (s: ConnectionState, detail: string) => void;
  #retryMs = 1000;
  #timer: number | undefined;
  #closed = false;

  constructor(onState: (s: ConnectionState, detail: string) => void) {
    this.#onState = onState;
  }

  connect(): void {
    this.#closed = false;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/v1/live`);
    this.#ws = ws;
    this.#onState('connecting', '');
    ws.onopen = () => {
      this.#retryMs = 1000;
      this.#onState('live', '');
      for (const [sub, params] of this.#subs) this.#sendSubscribe(sub, params);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      let m: ServerMessage;
      try {
        m = JSON.parse(ev.data) as ServerMessage;
      } catch {
        return;
      }
      if (m.type === 'skipped') this.#onState('behind', `${m.samples} samples skipped`);
      else if (m.type === 'data') this.#onState('live', '');
      for (const l of this.#listeners) l(m);
    };
    ws.onclose = (ev) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      if (this.#closed) return;
      // 1008/4401-style refusals and handshake failures look the same from here (code 1006): retry
      // with exponential backoff (1 s doubling to 30 s) and ±20 % jitter.
      const wait = this.#retryMs * (0.8 + Math.random() * 0.4);
      this.#retryMs = Math.min(30_000, this.#retryMs * 2);
      this.#onState('offline', `reconnecting in ${Math.round(wait / 1000)} s (code ${ev.code})`);
      this.#timer = window.setTimeout(() => this.connect(), wait);
    };
  }

  close(): void {
    this.#closed = true;
    window.clearTimeout(this.#timer);
    this.#ws?.close(1000);
    this.#ws = null;
  }

  onMessage(listener: (m: ServerMessage) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  subscribe(sub: string, params: SubscribeParams): void {
    this.#subs.set(sub, params);
    this.#sendSubscribe(sub, params);
  }

  unsubscribe(sub: string): void {
    if (!this.#subs.delete(sub)) return;
    this.#send({ type: 'unsubscribe', sub });
  }

  #sendSubscribe(sub: string, params: SubscribeParams): void {
    this.#send({ type: 'subscribe', sub, ...params });
  }

  #send(message: object): void {
    if (this.#ws?.readyState === WebSocket.OPEN) this.#ws.send(JSON.stringify(message));
  }
}
