/**
 * The simulated board's OTA (docs/ota.md, the `ota` command [PROTO-3.6]): two virtual app partitions
 * recorded in the board's NVS (so they survive reboots and, with --state-dir, runs), a download over
 * HTTP(S) with `Authorization: Bearer <credential>` that resumes with `Range: bytes=N-` after a cut or a
 * 503, SHA-256 and ECDSA P-256 signature checks before the switch, then a reboot into the new slot in
 * pending-verify state. After the next WELCOME the health check marks it valid — or, when the board is
 * set to fail it, rolls back: a software reset into the old slot, whose version the next HELLO carries.
 */
import { createHash, createPublicKey, type KeyObject, verify } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

/** The OTA part of the board's NVS. */
export interface OtaNvs {
  /** The slot the board boots (0 or 1). */
  running: 0 | 1;
  /** What each slot holds; null: never written (slot 0 holds the factory image, its version from the options). */
  slots: [OtaSlot | null, OtaSlot | null];
  /** The slot the next boot switches to (set after a verified download), or null. */
  nextBoot: 0 | 1 | null;
  /** The running image is new and not yet marked valid. */
  pendingVerify: boolean;
}

export interface OtaSlot {
  version: string;
  sha256: string;
  size: number;
}

export function emptyOtaNvs(): OtaNvs {
  return { running: 0, slots: [null, null], nextBoot: null, pendingVerify: false };
}

export interface OtaRequest {
  url: string;
  credential: string;
  sha256: string;
  signature: string;
  version: string;
  size: number;
}

/** The `ota` command's arguments, or a reason they are bad (COMMAND_RESULT 3). */
export function parseOtaArgs(args: ReadonlyMap<string, unknown>): OtaRequest | string {
  const s = (k: string) => (typeof args.get(k) === 'string' ? (args.get(k) as string) : undefined);
  const url = s('url');
  const credential = s('credential');
  const sha256 = s('sha256');
  const signature = s('signature');
  const version = s('version');
  const size = args.get('size');
  if (!url || !/^https?:\/\//.test(url)) return 'url must be an http(s) URL';
  if (!credential) return 'credential missing';
  if (!sha256 || !/^[0-9a-f]{64}$/.test(sha256)) return 'sha256 must be 64 lowercase hex characters';
  if (!signature) return 'signature missing';
  if (!version) return 'version missing';
  if (typeof size !== 'number' || !Number.isInteger(size) || size <= 0) return 'size must be a positive integer';
  return { url, credential, sha256, signature, version, size };
}

export interface OtaDownloadOptions {
  /** Attempts (each resumes from the bytes already written) before the download fails. Default 20. */
  maxAttempts?: number;
  /** Wait before a retry when the hub gave no Retry-After, ms. Default 500. */
  retryMs?: number;
  /** Accept a self-signed certificate (https). */
  insecure?: boolean;
  /** Stops the download (the board rebooted or stopped). */
  signal?: AbortSignal;
  /** Called as bytes arrive (tests cut downloads with it). */
  onProgress?: (written: number) => void;
}

/** The result of a download: the image, or the failed step for COMMAND_RESULT 1. */
export type OtaOutcome = { ok: true; image: Buffer; attempts: number } | { ok: false; step: string; detail: string };

/**
 * Downloads the image into a buffer (the inactive partition), resuming with Range after a cut, a
 * 503 (waiting Retry-After) or a network error, then checks the SHA-256 and the signature.
 */
export async function downloadAndVerify(
  req: OtaRequest,
  publicKey: KeyObject | null,
  o: OtaDownloadOptions = {},
): Promise<OtaOutcome> {
  const maxAttempts = o.maxAttempts ?? 20;
  const parts: Buffer[] = [];
  let written = 0;
  let attempts = 0;
  while (written < req.size) {
    if (o.signal?.aborted) return { ok: false, step: 'download', detail: 'stopped' };
    if (attempts >= maxAttempts) return { ok: false, step: 'download', detail: `gave up after ${attempts} attempts` };
    attempts++;
    const r = await getOnce(req, written, o, (chunk) => {
      parts.push(chunk);
      written += chunk.length;
      o.onProgress?.(written);
    });
    if (r.kind === 'fatal') return { ok: false, step: 'download', detail: r.detail };
    if (r.kind === 'retry' && written < req.size) {
      await sleep(r.afterMs ?? o.retryMs ?? 500, o.signal);
    }
  }
  const image = Buffer.concat(parts);
  if (image.length !== req.size)
    return { ok: false, step: 'download', detail: `got ${image.length} of ${req.size} bytes` };
  if (createHash('sha256').update(image).digest('hex') !== req.sha256) {
    return { ok: false, step: 'hash', detail: 'the SHA-256 does not match' };
  }
  if (publicKey !== null) {
    let good = false;
    try {
      good = verify('sha256', image, { key: publicKey, dsaEncoding: 'der' }, Buffer.from(req.signature, 'base64'));
    } catch {
      good = false;
    }
    if (!good) return { ok: false, step: 'signature', detail: 'the signature does not verify' };
  }
  return { ok: true, image, attempts };
}

type Attempt = { kind: 'done' } | { kind: 'retry'; afterMs?: number } | { kind: 'fatal'; detail: string };

function getOnce(req: OtaRequest, from: number, o: OtaDownloadOptions, onChunk: (c: Buffer) => void): Promise<Attempt> {
  return new Promise((resolve) => {
    const url = new URL(req.url);
    const headers: Record<string, string> = { authorization: `Bearer ${req.credential}` };
    if (from > 0) headers.range = `bytes=${from}-`;
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const r = send(
      url,
      {
        headers,
        agent: false,
        ...(o.insecure ? { rejectUnauthorized: false } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status === 503 || status === 429 || status >= 500) {
          const after = Number(res.headers['retry-after']);
          res.resume();
          resolve({ kind: 'retry', ...(Number.isFinite(after) ? { afterMs: after * 1000 } : {}) });
          return;
        }
        if ((from > 0 && status !== 206) || (from === 0 && status !== 200)) {
          res.resume();
          resolve({ kind: 'fatal', detail: `HTTP ${status}` });
          return;
        }
        res.on('data', onChunk);
        res.on('end', () => resolve({ kind: 'done' }));
        res.on('error', () => resolve({ kind: 'retry' }));
        res.on('aborted', () => resolve({ kind: 'retry' }));
      },
    );
    r.on('error', () => resolve({ kind: 'retry' }));
    r.end();
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Parses a PEM public key for the board's built-in OTA key. */
export function otaPublicKey(pem: string): KeyObject {
  return createPublicKey(pem);
}
