import { createServer, type Server } from 'node:net';

/**
 * Returns a TCP port that was free on `host` a moment ago (the kernel picks it: bind to port 0).
 *
 * Another process can take the port before our server binds it (several test runs share this
 * machine), so the server starters retry with fresh ports when a bind fails with "address in use".
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const [port] = await freePorts(1, host);
  if (port === undefined) throw new Error('freePort: no port returned');
  return port;
}

/** Returns `count` distinct free ports; all are held open together so the kernel cannot repeat one. */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      ports.push(await listenOnAnyPort(server, host));
    }
    return ports;
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}

function listenOnAnyPort(server: Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        reject(new Error(`freePort: unexpected address ${String(address)}`));
        return;
      }
      resolve(address.port);
    });
  });
}
