/** The page's REST calls (same origin, cookie-authenticated; docs/live-api.md §5). */
import type { DownsampledResponse } from '../http/history.ts';
import type { DeviceView, Sample } from '../live/state.ts';
import type { LabelTable } from '../storage/channel-labels.ts';

export interface SessionInfo {
  mode: 'open' | 'password';
  role: 'viewer' | 'operator';
  via: 'open' | 'session' | 'bearer';
  commands: boolean;
  /** Grafana's URL and the device dashboard's uid when GRAFANA_URL is set. */
  grafana?: { url: string; deviceDashboardUid: string } | null;
}

export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function call<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(path, { credentials: 'same-origin', ...init });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    const err = (body as { error?: { code?: string; message?: string } } | null)?.error;
    throw new HttpError(res.status, err?.code ?? String(res.status), err?.message ?? res.statusText);
  }
  return body as T;
}

export function getSession(): Promise<SessionInfo> {
  return call<SessionInfo>('/api/session');
}

export async function getDevices(): Promise<DeviceView[]> {
  return (await call<{ devices: DeviceView[] }>('/api/devices')).devices;
}

export async function getDevice(id: string): Promise<DeviceView> {
  return (await call<{ device: DeviceView }>(`/api/devices/${encodeURIComponent(id)}`)).device;
}

/**
 * History of one channel between two Unix-ms times, oldest first, as `[timeMs, value]`. The history
 * route answers the earliest readings first with `truncated` set when more matched: page forward.
 */
export async function getHistory(id: string, channel: string, fromMs: number, toMs: number): Promise<Sample[]> {
  const out: Sample[] = [];
  let from = fromMs;
  for (let page = 0; page < 5 && from <= toMs; page++) {
    const q = new URLSearchParams({ channel, from: String(from), to: String(toMs), limit: '10000' });
    const body = await call<unknown>(`/api/devices/${encodeURIComponent(id)}/history?${q}`);
    const samples = toSamples(body);
    for (const s of samples) out.push(s);
    const last = samples[samples.length - 1];
    if ((body as { truncated?: boolean } | null)?.truncated !== true || last === undefined) break;
    from = last[0] + 1;
  }
  return out;
}

/** Accepts the history route's point shapes: `[t, v]` pairs or `{timeMs|time|t, value|v}` objects. */
function toSamples(body: unknown): Sample[] {
  const list = Array.isArray(body)
    ? body
    : ((body as Record<string, unknown> | null)?.points ??
      (body as Record<string, unknown> | null)?.readings ??
      (body as Record<string, unknown> | null)?.samples ??
      []);
  const out: Sample[] = [];
  if (!Array.isArray(list)) return out;
  for (const p of list) {
    let t: unknown;
    let v: unknown;
    if (Array.isArray(p)) [t, v] = p;
    else if (p && typeof p === 'object') {
      const o = p as Record<string, unknown>;
      t = o.timeMs ?? o.time ?? o.t;
      v = o.value ?? o.v;
    }
    if (typeof t === 'string') t = Date.parse(t);
    if (typeof t === 'number' && (typeof v === 'number' || typeof v === 'boolean')) out.push([t, v]);
  }
  out.sort((a, b) => a[0] - b[0]);
  return out;
}

/** Every channel of a device between two times, downsampled into `buckets` buckets (min/mean/max). */
export function getDownsampled(
  id: string,
  fromMs: number,
  toMs: number,
  buckets: number,
): Promise<DownsampledResponse> {
  const q = new URLSearchParams({ from: String(fromMs), to: String(toMs), buckets: String(buckets) });
  return call<DownsampledResponse>(`/api/devices/${encodeURIComponent(id)}/history?${q}`);
}

/** The raw readings of a range as a CSV download. */
export function csvUrl(id: string, fromMs: number, toMs: number): string {
  const q = new URLSearchParams({ from: String(fromMs), to: String(toMs), format: 'csv' });
  return `/api/devices/${encodeURIComponent(id)}/history?${q}`;
}

export async function getLabels(): Promise<LabelTable> {
  return (await call<{ labels: LabelTable }>('/api/labels')).labels;
}

/** Sets (or, with an empty label, clears) a channel's display name; resolves with the label now in force. */
export async function setLabel(id: string, channel: string, label: string): Promise<string | null> {
  const path = `/api/devices/${encodeURIComponent(id)}/channels/${encodeURIComponent(channel)}/label`;
  const body = await call<{ label: string | null }>(path, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ label }),
  });
  return body.label;
}

export interface CommandArgs {
  [key: string]: number | boolean | string;
}

/** Sends a command; resolves with its id (the result arrives on the live connection). */
export async function sendCommand(id: string, name: string, args: CommandArgs): Promise<number> {
  const body = await call<Record<string, unknown>>(`/api/devices/${encodeURIComponent(id)}/commands`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name, args }),
  });
  const commandId = body.commandId ?? body.id;
  if (typeof commandId !== 'number') throw new HttpError(500, 'INTERNAL', 'the hub did not return a command id');
  return commandId;
}
