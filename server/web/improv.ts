/**
 * A small Improv Serial sender for the "Add a board" page: the board's vendor RPC command `0x80`
 * SET_HUB (docs/provisioning.md [PROV-IMPROV-HUB]) and the parsing of what the board answers (RPC
 * result: the hub page URL and the hardware id; error state). Pure byte functions plus one helper
 * that talks over an open Web Serial port; the Wi-Fi part of Improv is ESP Web Tools' own.
 *
 * Packet: `IMPROV` (6 bytes), version 1, type, data length, data, checksum = low byte of the sum of
 * every preceding byte of the packet.
 */

export const IMPROV_HEADER = [0x49, 0x4d, 0x50, 0x52, 0x4f, 0x56] as const; // "IMPROV"
export const IMPROV_VERSION = 1;
export const ImprovType = { CURRENT_STATE: 0x01, ERROR_STATE: 0x02, RPC_COMMAND: 0x03, RPC_RESULT: 0x04 } as const;
export const SET_HUB_COMMAND = 0x80;
export const HUB_URL_MAX = 128;
export const FLEET_SECRET_MAX = 64;

export interface ImprovPacket {
  type: number;
  data: Uint8Array;
}

/** One Improv Serial packet with its checksum. */
export function improvPacket(type: number, data: Uint8Array): Uint8Array {
  if (data.length > 255) throw new RangeError('Improv packet data is at most 255 bytes');
  const out = new Uint8Array(10 + data.length);
  out.set(IMPROV_HEADER, 0);
  out[6] = IMPROV_VERSION;
  out[7] = type;
  out[8] = data.length;
  out.set(data, 9);
  let sum = 0;
  for (let i = 0; i < 9 + data.length; i++) sum += out[i] as number;
  out[9 + data.length] = sum & 0xff;
  return out;
}

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

/**
 * Checks a hub URL as the board does: `ws(s)://HOST[:PORT][/PREFIX]`, printable ASCII without spaces,
 * no user info, query or fragment, port 1..65535, at most 128 bytes. Returns it unchanged (the board
 * drops a trailing `/` itself); throws RangeError naming what is wrong.
 */
export function checkHubUrl(url: string): string {
  if (!/^wss?:\/\/[\x21-\x7e]+$/.test(url)) throw new RangeError('the hub URL must be ws:// or wss:// and printable');
  if (/[?#@]/.test(url)) throw new RangeError('the hub URL carries no user, query or fragment');
  if (url.length > HUB_URL_MAX) throw new RangeError(`the hub URL is at most ${HUB_URL_MAX} characters`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RangeError('the hub URL is not a URL');
  }
  if (!parsed.hostname) throw new RangeError('the hub URL needs a host');
  if (/:0+(\/|$)/.test(url.slice(url.indexOf('//') + 2))) throw new RangeError('the hub URL port must be 1..65535');
  return url;
}

/** The hub URL a board on the LAN uses for this page's origin: `http://h:p` → `ws://h:p`. */
export function hubUrlFor(origin: string): string {
  return origin.replace(/^http/, 'ws').replace(/\/+$/, '');
}

/**
 * SET_HUB (RPC command 0x80): the hub URL and, when `fleetSecret` is given, the fleet secret (an empty
 * one clears the board's); `url` null is the query form (no data).
 */
export function setHubPacket(url: string | null, fleetSecret?: string): Uint8Array {
  const cmd: number[] = [];
  if (url !== null) {
    const u = ascii(checkHubUrl(url));
    cmd.push(u.length, ...u);
    if (fleetSecret !== undefined) {
      const s = new TextEncoder().encode(fleetSecret);
      if (s.length > FLEET_SECRET_MAX) throw new RangeError(`the fleet secret is at most ${FLEET_SECRET_MAX} bytes`);
      cmd.push(s.length, ...s);
    }
  }
  return improvPacket(ImprovType.RPC_COMMAND, Uint8Array.from([SET_HUB_COMMAND, cmd.length, ...cmd]));
}

/**
 * Finds the Improv packets in bytes read from the serial port (log lines and other noise between
 * them are skipped; a packet with a bad checksum is dropped). Returns the packets and the bytes to
 * keep for the next read (an incomplete packet at the end).
 */
export function parseImprovStream(bytes: Uint8Array): { packets: ImprovPacket[]; rest: Uint8Array } {
  const packets: ImprovPacket[] = [];
  let i = 0;
  let keepFrom = bytes.length;
  while (i < bytes.length) {
    const at = indexOfHeader(bytes, i);
    if (at < 0) {
      // Keep a tail that may be the start of a header.
      keepFrom = Math.max(i, bytes.length - (IMPROV_HEADER.length - 1));
      break;
    }
    if (at + 9 > bytes.length) {
      keepFrom = at;
      break;
    }
    const len = bytes[at + 8] as number;
    const end = at + 9 + len + 1;
    if (end > bytes.length) {
      keepFrom = at;
      break;
    }
    let sum = 0;
    for (let k = at; k < end - 1; k++) sum += bytes[k] as number;
    if ((sum & 0xff) === bytes[end - 1] && bytes[at + 6] === IMPROV_VERSION) {
      packets.push({ type: bytes[at + 7] as number, data: bytes.slice(at + 9, end - 1) });
      i = end;
    } else {
      i = at + 1; // not a packet after all: look further
    }
    keepFrom = bytes.length;
  }
  return { packets, rest: bytes.slice(keepFrom) };
}

function indexOfHeader(bytes: Uint8Array, from: number): number {
  outer: for (let i = from; i + IMPROV_HEADER.length <= bytes.length; i++) {
    for (let k = 0; k < IMPROV_HEADER.length; k++) if (bytes[i + k] !== IMPROV_HEADER[k]) continue outer;
    return i;
  }
  return -1;
}

/** The strings of an RPC result packet's data (`command, length, (len, string)…`), or null if malformed. */
export function rpcResultStrings(data: Uint8Array): { command: number; strings: string[] } | null {
  if (data.length < 2) return null;
  const command = data[0] as number;
  const total = data[1] as number;
  if (2 + total !== data.length) return null;
  const strings: string[] = [];
  let p = 2;
  while (p < data.length) {
    const n = data[p] as number;
    if (p + 1 + n > data.length) return null;
    strings.push(new TextDecoder().decode(data.subarray(p + 1, p + 1 + n)));
    p += 1 + n;
  }
  return { command, strings };
}

/** What the board answered to SET_HUB. */
export type SetHubAnswer = { ok: true; hubPageUrl: string; hardwareId: string } | { ok: false; error: string };

/** Interprets one packet from the board as the answer to SET_HUB, or null if it is something else. */
export function setHubAnswer(p: ImprovPacket): SetHubAnswer | null {
  if (p.type === ImprovType.ERROR_STATE) {
    const code = p.data[0] ?? 0;
    if (code === 0) return null;
    const names: Record<number, string> = {
      1: 'the board refused the request (invalid RPC packet: check the URL)',
      2: 'the board does not know this command (firmware without the hub extension?)',
      3: 'unable to connect',
      255: 'unknown error',
    };
    return { ok: false, error: names[code] ?? `error state ${code}` };
  }
  if (p.type !== ImprovType.RPC_RESULT) return null;
  const r = rpcResultStrings(p.data);
  if (!r || r.command !== SET_HUB_COMMAND) return null;
  return { ok: true, hubPageUrl: r.strings[0] ?? '', hardwareId: r.strings[1] ?? '' };
}

/** The part of the Web Serial API the sender uses. */
export interface SerialPortLike {
  readable: ReadableStream<Uint8Array> | null;
  writable: WritableStream<Uint8Array> | null;
}

/** Sends SET_HUB over an open port and waits (up to `timeoutMs`) for the board's answer. */
export async function sendSetHub(
  port: SerialPortLike,
  url: string,
  fleetSecret: string | undefined,
  timeoutMs = 5000,
): Promise<SetHubAnswer> {
  if (!port.readable || !port.writable) return { ok: false, error: 'the serial port is not open' };
  const packet = setHubPacket(url, fleetSecret);
  const writer = port.writable.getWriter();
  try {
    await writer.write(Uint8Array.from([...packet, 0x0a]));
  } finally {
    writer.releaseLock();
  }
  const reader = port.readable.getReader();
  const timer = setTimeout(() => void reader.cancel().catch(() => undefined), timeoutMs);
  let buffered: Uint8Array = new Uint8Array(0);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return { ok: false, error: 'no answer from the board (is the hub firmware running?)' };
      const joined = new Uint8Array(buffered.length + value.length);
      joined.set(buffered);
      joined.set(value, buffered.length);
      const { packets, rest } = parseImprovStream(joined);
      buffered = rest;
      for (const p of packets) {
        const answer = setHubAnswer(p);
        if (answer) return answer;
      }
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}
