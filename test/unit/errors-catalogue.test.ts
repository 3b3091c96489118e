/**
 * docs/errors.md and server/errors.ts must describe the same catalogue (as fastify's errors test does):
 * same codes, same wire / close / HTTP codes, same layers, and no two codes sharing a wire code.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS, type ErrorCode, errorCodeFromWire, HubError } from '../../server/errors.ts';

interface Row {
  code: string;
  wire: number;
  close: number | null;
  http: number | null;
  layer: string;
  meaning: string;
  action: string;
}

const HEADER = ['Code', 'Wire', 'Close', 'HTTP', 'Layer', 'Meaning', 'What to do'];

/** Parses the one table of docs/errors.md; `—` means none. */
function parseCatalogue(markdown: string): Row[] {
  const lines = markdown.split('\n');
  const cells = (line: string) =>
    line
      .trim()
      .replace(/^\||\|$/g, '')
      .split('|')
      .map((c) => c.trim());
  const start = lines.findIndex((l) => l.startsWith('|') && cells(l).join('/') === HEADER.join('/'));
  if (start < 0) throw new Error(`docs/errors.md has no table with the header ${HEADER.join(' | ')}`);
  const rows: Row[] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    const c = cells(line);
    if (c.length !== HEADER.length) throw new Error(`row has ${c.length} cells, expected ${HEADER.length}: ${line}`);
    const num = (s: string) => (s === '—' ? null : Number(s));
    const [code, wire, close, http, layer, meaning, action] = c as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    rows.push({
      code: code.replace(/`/g, ''),
      wire: Number(wire),
      close: num(close),
      http: num(http),
      layer,
      meaning,
      action,
    });
  }
  return rows;
}

const rows = parseCatalogue(readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8'));
const codes = Object.keys(ERRORS) as ErrorCode[];

describe('docs/errors.md ↔ server/errors.ts', () => {
  it('lists exactly the codes of ERRORS, in the same order', () => {
    expect(rows.map((r) => r.code)).toEqual(codes);
  });

  it.each(codes)('%s has the same wire, close, HTTP and layer in both', (code) => {
    const row = rows.find((r) => r.code === code);
    const spec = ERRORS[code];
    expect(row).toBeDefined();
    expect({ wire: row?.wire, close: row?.close, http: row?.http, layer: row?.layer }).toEqual({
      wire: spec.wire,
      close: spec.close,
      http: spec.http,
      layer: spec.layer,
    });
  });

  it('gives every row a meaning and an action', () => {
    for (const row of rows) {
      expect(row.meaning.length, row.code).toBeGreaterThan(10);
      expect(row.action.length, row.code).toBeGreaterThan(10);
    }
  });

  it('has no two codes with the same wire code, in either place', () => {
    const wires = codes.map((c) => ERRORS[c].wire);
    expect(new Set(wires).size).toBe(wires.length);
    const docWires = rows.map((r) => r.wire);
    expect(new Set(docWires).size).toBe(docWires.length);
    for (const code of codes) expect(errorCodeFromWire(ERRORS[code].wire)).toBe(code);
  });

  it('keeps wire codes in u16 and close codes in the ranges [PROTO-7] allows', () => {
    for (const code of codes) {
      const { wire, close, http } = ERRORS[code];
      expect(Number.isInteger(wire) && wire >= 0 && wire <= 0xffff, code).toBe(true);
      if (close !== null) expect([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013, 4001], code).toContain(close);
      if (http !== null) expect(http >= 400 && http <= 599, code).toBe(true);
    }
  });
});

describe('HubError', () => {
  it('exposes the catalogue entry of its code', () => {
    const err = new HubError('DEVICE_MISMATCH');
    expect([err.code, err.wireCode, err.closeCode, err.httpStatus]).toEqual(['DEVICE_MISMATCH', 202, 1008, null]);
    expect(err.message).toBe(ERRORS.DEVICE_MISMATCH.summary);
  });
});
