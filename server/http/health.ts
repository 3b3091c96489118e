/**
 * `/healthz` (the process is up), `/readyz` (the local log is open and the server listens; with
 * InfluxDB configured the forwarder's state is reported but does not make the hub unready: the local
 * log buffers while InfluxDB is away) and `/metrics` (Prometheus text from the hub's registry).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Metrics } from '../metrics/index.ts';

export interface Readiness {
  ready: boolean;
  checks: Record<string, unknown>;
}

export interface HealthOptions {
  metrics: Metrics;
  readiness: () => Readiness;
  /** Runs before `/metrics` is rendered (moves hot-path counts into the registry). */
  beforeScrape?: () => void;
}

/** Returns a request handler that answers the three paths and returns false for anything else. */
export function createHealthRoutes(opts: HealthOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/healthz' && path !== '/readyz' && path !== '/metrics') return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('method not allowed\n');
      return true;
    }
    if (path === '/healthz') {
      json(res, 200, { status: 'ok' });
    } else if (path === '/readyz') {
      const r = opts.readiness();
      json(res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', ...r.checks });
    } else {
      opts.beforeScrape?.();
      opts.metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'Content-Type': opts.metrics.registry.contentType, 'Cache-Control': 'no-store' });
          res.end(text);
        },
        (err: Error) => {
          res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`metrics failed: ${err.message}\n`);
        },
      );
    }
    return true;
  };
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(body);
}
