/**
 * wss:// by configuration: HUB_TLS_CERT_FILE / HUB_TLS_KEY_FILE make the one server HTTPS; the device
 * endpoint, its handshake checks and the session work the same over TLS. The certificate is a
 * throwaway self-signed one made with `openssl` in a temp dir.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { decodeFrame, encodeFrame, SUBPROTOCOL } from '../../server/codec/index.ts';
import { findExecutable, type TempDir, tempDir } from '../harness/index.ts';
import { startTestHub, type TestHub } from './ingest-device-client.ts';

describe('device endpoint over TLS', () => {
  let dir: TempDir;
  let h: TestHub;
  let token: string;

  beforeAll(async () => {
    dir = await tempDir('ingest-tls');
    const cert = join(dir.path, 'cert.pem');
    const key = join(dir.path, 'key.pem');
    execFileSync(
      findExecutable('openssl'),
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    h = await startTestHub({ HUB_TLS_CERT_FILE: cert, HUB_TLS_KEY_FILE: key });
    token = await h.addDevice('esp-tls');
  });
  afterAll(async () => {
    await h?.stop();
    await h?.dir.remove();
    await dir?.remove();
  });

  const connect = (headers: Record<string, string>) =>
    new WebSocket(h.url.replace('ws://', 'wss://'), [SUBPROTOCOL], { headers, rejectUnauthorized: false });

  it('refuses a missing token with 401 over TLS', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const ws = connect({});
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => reject(new Error('accepted')));
      ws.once('error', () => undefined);
    });
    expect(status).toBe(401);
  });

  it('runs HELLO → WELCOME over wss://', async () => {
    const ws = connect({ Authorization: `Bearer ${token}` });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const welcome = new Promise<ReturnType<typeof decodeFrame>>((resolve) =>
      ws.once('message', (d: Buffer) => resolve(decodeFrame(d))),
    );
    ws.send(
      encodeFrame({
        type: 'hello',
        timeSynced: true,
        deviceId: 'esp-tls',
        firmwareVersion: 't',
        maxProtocolVersion: 1,
        bootId: 1,
        resetReason: 1,
        uptimeMs: 10,
        descriptorHash: 0,
        bufferedFrames: 0,
        droppedFrames: 0,
      }),
    );
    expect(await welcome).toMatchObject({ type: 'welcome', acceptedVersion: 1 });
    ws.close();
  });
});
