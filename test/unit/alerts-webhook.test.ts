// The alert webhook sink against a real local HTTP server: signature, order, retries with backoff,
// timeout, refusals, the bounded queue's drop policy, shutdown. Each drop is counted and logged; the
// secret and the URL's path never reach the log. Waits on conditions only.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { alertMetrics } from '../../server/alerts/metrics.ts';
import type { AlertEvent, WebhookConfig } from '../../server/alerts/types.ts';
import { createWebhookSink, SIGNATURE_HEADER, signBody, type WebhookSink } from '../../server/alerts/webhook.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';

type Reply = (req: IncomingMessage, res: ServerResponse) => void;

interface Receiver {
  url: string;
  bodies: { body: string; signature: string | undefined; contentType: string | undefined }[];
  /** Answers for the next requests, in order; then 200. */
  replies: Reply[];
  server: Server;
}

const open: { server?: Server; sink?: WebhookSink }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    await o.sink?.stop(100);
    const server = o.server;
    if (!server) continue;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function receiver(): Promise<Receiver> {
  const r: Receiver = { url: '', bodies: [], replies: [], server: createServer() };
  r.server.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      r.bodies.push({
        body: Buffer.concat(chunks).toString('utf8'),
        signature: req.headers[SIGNATURE_HEADER] as string | undefined,
        contentType: req.headers['content-type'],
      });
      const reply = r.replies.shift();
      if (reply) reply(req, res);
      else res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => r.server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(r.server.address() as AddressInfo).port}/hooks/SECRET-PATH-TOKEN`;
  open.push({ server: r.server });
  return r;
}

function event(seq: number, state: AlertEvent['state'] = 'firing'): AlertEvent {
  return {
    id: `offline/esp-${seq}/1000`,
    rule: 'offline',
    kind: 'offline',
    device: `esp-${seq}`,
    state,
    severity: 'warning',
    summary: 'offline for more than 60 s (closed)',
    firingSinceMs: 1000,
    atMs: 1000,
    seq,
  };
}

function sinkFor(url: string, over: Partial<WebhookConfig> = {}) {
  const metrics = createMetrics();
  const m = alertMetrics(metrics);
  const lines: string[] = [];
  const logger = createLogger(
    'info',
    new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    }),
  );
  const sink = createWebhookSink({
    config: { url, secret: null, timeoutMs: 2000, maxAttempts: 3, queueMax: 100, ...over },
    metrics: m,
    logger,
    retryMs: { min: 20, max: 100 },
  });
  open.push({ sink });
  const count = async (outcome: string) =>
    (await m.webhook.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
  return { sink, count, lines, m };
}

async function until(predicate: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await predicate())) await new Promise((resolve) => setTimeout(resolve, 5));
}

describe('alert webhook', () => {
  it('POSTs each event as JSON, in order, signed with HMAC-SHA256 when a secret is set', async () => {
    const r = await receiver();
    const secret = 'webhook-secret-1234567890';
    const { sink, count, lines } = sinkFor(r.url, { secret });
    for (let i = 1; i <= 5; i++) sink.enqueue(event(i));
    await until(async () => (await count('delivered')) === 5);
    expect(r.bodies.map((b) => JSON.parse(b.body).seq)).toEqual([1, 2, 3, 4, 5]);
    for (const b of r.bodies) {
      expect(b.contentType).toBe('application/json');
      expect(b.signature).toBe(signBody(secret, b.body));
      expect(b.signature).toMatch(/^sha256=[0-9a-f]{64}$/);
    }
    expect(JSON.parse(r.bodies[0]?.body ?? '')).toEqual(event(1));
    expect(lines.join('')).not.toContain(secret);
  });

  it('retries a 5xx, a 429 and a dropped connection with backoff, then delivers', async () => {
    const r = await receiver();
    r.replies.push(
      (_q, res) => res.writeHead(503).end(),
      (_q, res) => res.writeHead(429, { 'retry-after': '0' }).end(),
      (_q, res) => res.socket?.destroy(),
    );
    const { sink, count } = sinkFor(r.url, { maxAttempts: 4 });
    sink.enqueue(event(1));
    await until(async () => (await count('delivered')) === 1);
    expect(await count('retry')).toBe(3);
    expect(r.bodies).toHaveLength(4);
    expect(new Set(r.bodies.map((b) => b.body)).size).toBe(1);
  });

  it('counts a timeout as a failed attempt; gives up after maxAttempts, logs it, and goes on with the next event', async () => {
    const r = await receiver();
    const hang: Reply = () => undefined; // never answers
    r.replies.push(hang, hang);
    // 1 s: long enough that the prompt 200 of event 2 never times out on a busy machine.
    const { sink, count, lines } = sinkFor(r.url, { maxAttempts: 2, timeoutMs: 1000 });
    sink.enqueue(event(1));
    sink.enqueue(event(2));
    await until(async () => (await count('delivered')) === 1);
    expect(await count('gave_up')).toBe(1);
    expect(await count('retry')).toBe(1);
    expect(JSON.parse(r.bodies[2]?.body ?? '').seq).toBe(2);
    const log = lines.join('');
    expect(log).toContain('alert webhook: event dropped');
    expect(log).toContain('gave_up');
    expect(log).toContain('offline/esp-1/1000');
    // The URL's path may hold a token: only the origin is logged.
    expect(log).not.toContain('SECRET-PATH-TOKEN');
  });

  it('drops an event the receiver refuses (4xx, or a redirect: not followed) at once', async () => {
    const r = await receiver();
    r.replies.push(
      (_q, res) => res.writeHead(400).end(),
      (_q, res) => res.writeHead(301, { location: '/elsewhere' }).end(),
    );
    const { sink, count } = sinkFor(r.url);
    sink.enqueue(event(1));
    sink.enqueue(event(2));
    sink.enqueue(event(3));
    await until(async () => (await count('delivered')) === 1);
    expect(await count('rejected')).toBe(2);
    expect(r.bodies).toHaveLength(3);
    expect(await count('retry')).toBe(0);
  });

  it('keeps at most queueMax events: the oldest waiting one is dropped, never the one in flight', async () => {
    const r = await receiver();
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    r.replies.push((_q, res) => void held.then(() => res.writeHead(200).end()));
    const { sink, count, m } = sinkFor(r.url, { queueMax: 3 });
    sink.enqueue(event(1)); // in flight, held
    await until(() => r.bodies.length === 1);
    for (let i = 2; i <= 6; i++) sink.enqueue(event(i));
    expect(await count('queue_full')).toBe(3);
    expect((await m.webhookQueued.get()).values[0]?.value).toBe(3);
    release();
    await until(async () => (await count('delivered')) === 3);
    expect(r.bodies.map((b) => JSON.parse(b.body).seq)).toEqual([1, 5, 6]);
  });

  it('stop: waits for the queue within the grace, then drops the rest as shutdown', async () => {
    const r = await receiver();
    for (let i = 0; i < 100; i++) r.replies.push((_q, res) => res.writeHead(503).end());
    const { sink, count } = sinkFor(r.url, { maxAttempts: 100 });
    sink.enqueue(event(1));
    sink.enqueue(event(2));
    await until(() => r.bodies.length >= 2); // event 1 is retrying
    await sink.stop(1000);
    // A backoff wait ends at once; each event still queued gets its drop, none is left behind.
    expect(await count('shutdown')).toBe(2);
    expect(await count('delivered')).toBe(0);
    sink.enqueue(event(3));
    expect(await count('shutdown')).toBe(3);
  });
});
