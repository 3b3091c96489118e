/**
 * The one LISTEN connection of an instance: change notifications of the registry and of session claims
 * arrive here. When it breaks, the database counts as unreachable (see db.ts) and the listener
 * reconnects with backoff and jitter (100 ms doubling to 5 s); once it listens again, `onReconnected`
 * resynchronises what notifications may have been missed (a full registry reload, the sessions'
 * onResync), and only then is the outage over.
 */
import pg from 'pg';
import type { Logger } from '../../log/index.ts';
import { clientConfig, type Db } from './db.ts';
import type { StoreMetrics } from './metrics.ts';

export interface ListenerOptions {
  url: string;
  instanceId: string;
  channels: readonly string[];
  db: Db;
  logger: Logger;
  metrics: StoreMetrics;
  onNotification(channel: string, payload: string): void;
  /** Runs after a reconnect, before the outage is declared over; a failure counts as a new loss. */
  onReconnected(): Promise<void>;
}

const MIN_DELAY_MS = 100;
const MAX_DELAY_MS = 5_000;

export class Listener {
  private client: pg.Client | null = null;
  private closed = false;
  private reconnecting: Promise<void> | null = null;
  private wake: (() => void) | null = null;

  constructor(private readonly options: ListenerOptions) {}

  /** Connected and listening, and not in the middle of a reconnect's resync. */
  get listening(): boolean {
    return this.client !== null && this.reconnecting === null;
  }

  /** One connection attempt (LISTEN on every channel); throws when it fails. */
  async connect(): Promise<void> {
    const client = new pg.Client(clientConfig(this.options.url, this.options.instanceId));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, new Error('the listening connection ended')));
    client.on('notification', (msg) => {
      this.options.metrics.notifications.inc({ channel: msg.channel });
      this.options.onNotification(msg.channel, msg.payload ?? '');
    });
    try {
      await client.connect();
      for (const channel of this.options.channels) await client.query(`LISTEN ${channel}`);
    } catch (err) {
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
  }

  private lost(client: pg.Client, err: unknown): void {
    if (client !== this.client || this.closed) return;
    this.client = null;
    client.end().catch(() => undefined);
    this.options.metrics.errors.inc({ op: 'listen' });
    this.options.db.markDown(err, 'listen');
    this.reconnect();
  }

  private reconnect(): void {
    this.reconnecting ??= this.reconnectLoop().finally(() => {
      this.reconnecting = null;
    });
  }

  private async reconnectLoop(): Promise<void> {
    let delayMs = MIN_DELAY_MS;
    while (!this.closed) {
      await this.sleep(delayMs / 2 + Math.random() * (delayMs / 2));
      if (this.closed) return;
      try {
        await this.connect();
        if (this.closed) return;
        this.options.metrics.reconnects.inc();
        await this.options.onReconnected();
        this.options.db.markUp();
        return;
      } catch (err) {
        this.options.metrics.errors.inc({ op: 'reconnect' });
        this.options.db.markDown(err, 'reconnect');
        const client = this.client;
        this.client = null;
        client?.removeAllListeners('end');
        await client?.end().catch(() => undefined);
        delayMs = Math.min(delayMs * 2, MAX_DELAY_MS);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }

  /** A query found the database gone: drop this connection too and reconnect (then resync). */
  recycle(err: unknown): void {
    if (this.client && this.reconnecting === null) this.lost(this.client, err);
  }

  /** Drops the connection of a failed start attempt (no outage, no reconnect). */
  async disconnect(): Promise<void> {
    const client = this.client;
    this.client = null;
    client?.removeAllListeners('end');
    await client?.end().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    await this.reconnecting;
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }
}
