/** Test helpers: a router served on a loopback port, and a small request function. */
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import type { pino } from 'pino';
import type { Router } from '../../server/http/router.ts';
import { createLogger, type Logger } from '../../server/log/index.ts';

export interface Served {
  baseUrl: string;
  port: number;
  close(): Promise<void>;
}

/** Serves `router` on 127.0.0.1 with an OS-chosen port. */
export async function serve(router: Router): Promise<Served> {
  const server: Server = createServer(router.listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The body parsed as JSON (undefined when empty). */
  json: unknown;
}

/**
 * One request over a fresh connection. `body` given as a string is sent as is (set `content-type`
 * yourself); `chunked: true` omits Content-Length.
 */
export function request(
  port: number,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: string | Buffer; chunked?: boolean } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.body !== undefined && !options.chunked) {
      headers['content-length'] = String(Buffer.byteLength(options.body));
    }
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const isJson = (res.headers['content-type'] ?? '').startsWith('application/json');
        try {
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text,
            json: isJson && text ? JSON.parse(text) : undefined,
          });
        } catch (err) {
          reject(err);
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

/** A logger whose lines are kept in `lines` (parsed), for asserting what was (not) logged. */
export function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[]; raw: string[] } {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      callback();
    },
  });
  return { logger: createLogger('trace', sink as unknown as pino.DestinationStream), lines, raw };
}
