/**
 * The page's Improv sender (server/web/improv.ts) against the byte layouts the firmware documents in
 * docs/provisioning.md [PROV-IMPROV-HUB] (the examples are parsed out of the doc itself, so the two
 * cannot drift) and, when the firmware's vector file firmware/test/improv-cases.json is there, against
 * every SET_HUB case in it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  checkHubUrl,
  hubUrlFor,
  ImprovType,
  improvPacket,
  parseImprovStream,
  setHubAnswer,
  setHubPacket,
} from '../../server/web/improv.ts';

const DOC = readFileSync(new URL('../../docs/provisioning.md', import.meta.url), 'utf8');

/** The hex blocks of the doc's examples, keyed by the line that names them. */
function docExamples(): Map<string, Uint8Array> {
  const block = /```\n([\s\S]*?)```/g;
  const out = new Map<string, Uint8Array>();
  for (const m of DOC.matchAll(block)) {
    const lines = (m[1] as string).split('\n');
    let name: string | null = null;
    let hex = '';
    const flush = () => {
      if (name && hex) out.set(name, Uint8Array.from(Buffer.from(hex.replace(/\s+/g, ''), 'hex')));
    };
    for (const line of lines) {
      if (/^[0-9A-F]{2}( [0-9A-F]{2})*\s*$/.test(line.trim()) && line.trim() !== '') hex += line;
      else {
        flush();
        name = line.trim() || null;
        hex = '';
      }
    }
    flush();
  }
  return out;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('SET_HUB (Improv vendor command 0x80) as docs/provisioning.md defines it', () => {
  const examples = docExamples();

  it('finds the documented examples', () => {
    expect([...examples.keys()]).toEqual(
      expect.arrayContaining([
        'set ws://192.168.1.10:8080',
        'query',
        'set ws://192.168.1.10:8080 with the fleet secret "s3cret"',
      ]),
    );
  });

  it('encodes the set, set-with-secret and query examples byte for byte', () => {
    expect(hex(setHubPacket('ws://192.168.1.10:8080'))).toBe(
      hex(examples.get('set ws://192.168.1.10:8080') as Uint8Array),
    );
    expect(hex(setHubPacket('ws://192.168.1.10:8080', 's3cret'))).toBe(
      hex(examples.get('set ws://192.168.1.10:8080 with the fleet secret "s3cret"') as Uint8Array),
    );
    expect(hex(setHubPacket(null))).toBe(hex(examples.get('query') as Uint8Array));
  });

  it('reads the documented result out of a stream with log noise and a split read', () => {
    const name = [...examples.keys()].find((k) => k.startsWith('result:')) as string;
    const result = examples.get(name) as Uint8Array;
    const noise = new TextEncoder().encode('I (123) wifi: connected\r\n');
    const stream = Uint8Array.from([...noise, ...result, 0x0a]);
    const first = parseImprovStream(stream.subarray(0, noise.length + 20));
    expect(first.packets).toEqual([]);
    const joined = Uint8Array.from([...first.rest, ...stream.subarray(noise.length + 20)]);
    const { packets } = parseImprovStream(joined);
    expect(packets).toHaveLength(1);
    expect(setHubAnswer(packets[0] as never)).toEqual({
      ok: true,
      hubPageUrl: 'http://192.168.1.10:8080/#/device/esp32-a4cf12345678',
      hardwareId: 'esp32-a4cf12345678',
    });
  });

  it('drops a packet with a bad checksum and reports an error state', () => {
    const good = setHubPacket('ws://h:1');
    const bad = good.slice();
    bad[bad.length - 1] = (bad.at(-1) as number) ^ 0xff;
    expect(parseImprovStream(bad).packets).toEqual([]);
    const err = improvPacket(ImprovType.ERROR_STATE, Uint8Array.from([1]));
    expect(setHubAnswer(parseImprovStream(err).packets[0] as never)).toMatchObject({ ok: false });
  });

  it('refuses URLs the board would refuse, and oversized fields', () => {
    expect(() => checkHubUrl('http://h:1')).toThrow(RangeError);
    expect(() => checkHubUrl('ws://user@h:1')).toThrow(RangeError);
    expect(() => checkHubUrl('ws://h:1/?x')).toThrow(RangeError);
    expect(() => checkHubUrl(`ws://${'h'.repeat(124)}`)).toThrow(RangeError);
    expect(() => setHubPacket('ws://h:1', 's'.repeat(65))).toThrow(RangeError);
    expect(hubUrlFor('https://hub.example:8443')).toBe('wss://hub.example:8443');
  });
});

const CASES = new URL('../../firmware/test/improv-cases.json', import.meta.url);

interface Cases {
  rpcCommands: {
    name: string;
    command: number;
    bytes: string;
    parsed: { url?: string; secret?: string; query?: boolean };
  }[];
  rpcResults: { name: string; command: number; strings: string[]; bytes: string }[];
  malformed: { name: string; bytes: string; parser: string }[];
  streams: { name: string; bytes: string; packets: { type: number; data: string }[] }[];
}

describe.runIf(existsSync(CASES))('firmware/test/improv-cases.json (the firmware’s byte vectors)', () => {
  const cases = existsSync(CASES) ? (JSON.parse(readFileSync(CASES, 'utf8')) as Cases) : null;
  const setHub = cases?.rpcCommands.filter((c) => c.command === 0x80) ?? [];
  const results = cases?.rpcResults.filter((c) => c.command === 0x80) ?? [];
  const refused = cases?.malformed.filter((c) => c.name.startsWith('SET_HUB:')) ?? [];

  it.each(setHub.map((c) => [c.name, c] as const))('%s: encoded byte for byte', (_n, c) => {
    const packet = c.parsed.query ? setHubPacket(null) : setHubPacket(c.parsed.url as string, c.parsed.secret);
    expect(hex(packet)).toBe(c.bytes);
  });

  it.each(results.map((c) => [c.name, c] as const))('%s: read back', (_n, c) => {
    const { packets } = parseImprovStream(Buffer.from(c.bytes, 'hex'));
    expect(setHubAnswer(packets[0] as never)).toEqual({ ok: true, hubPageUrl: c.strings[0], hardwareId: c.strings[1] });
  });

  it.each(refused.map((c) => [c.name, c] as const))('%s: the page refuses to send it', (_n, c) => {
    const data = Buffer.from(c.bytes, 'hex').subarray(9, -1); // command, length, u, url…, [s, secret…]
    const u = data[2] ?? 0;
    const url = data.subarray(3, 3 + u).toString('latin1');
    const rest = data.subarray(3 + u);
    const secret = rest.length > 0 ? rest.subarray(1, 1 + (rest[0] as number)).toString('utf8') : undefined;
    const trailing = rest.length > 0 && rest.length !== 1 + (rest[0] as number);
    // A packet with bytes after the secret cannot be produced by the encoder at all.
    if (trailing) return;
    expect(() => setHubPacket(url, secret)).toThrow(RangeError);
  });

  it.each((cases?.streams ?? []).map((c) => [c.name, c] as const))('stream: %s', (_n, c) => {
    const { packets } = parseImprovStream(Buffer.from(c.bytes, 'hex'));
    expect(packets.map((p) => ({ type: p.type, data: hex(p.data) }))).toEqual(c.packets);
  });

  it('finds no packet in the bad-checksum, wrong-version and cut vectors', () => {
    for (const c of cases?.malformed.filter((m) => m.parser === 'bad-checksum' || m.parser === 'none') ?? []) {
      expect(parseImprovStream(Buffer.from(c.bytes, 'hex')).packets, c.name).toEqual([]);
    }
  });
});
