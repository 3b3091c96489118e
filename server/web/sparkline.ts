/**
 * A sparkline: the last ~60 steps of a channel as an SVG polyline. Points are bucketed per step
 * (latest value wins), the same way the hub builds the trail it serves in `GET /api/devices`, and
 * kept in time order whatever order they arrive in.
 */
import type { Sample } from '../live/state.ts';
import { svg } from './dom.ts';

const W = 120;
const H = 28;

export class Sparkline {
  readonly el: SVGSVGElement;
  readonly #line: SVGPolylineElement;
  #points: [number, number][] = [];
  readonly #stepMs: number;
  readonly #max: number;

  constructor(stepMs = 1000, max = 60) {
    this.#stepMs = stepMs;
    this.#max = max;
    this.el = svg('svg', {
      class: 'spark',
      viewBox: `0 0 ${W} ${H}`,
      preserveAspectRatio: 'none',
      'aria-hidden': 'true',
    });
    this.#line = svg('polyline', { fill: 'none', 'vector-effect': 'non-scaling-stroke' });
    this.el.append(this.#line);
  }

  /**
   * Adds samples in any order (a REST trail may arrive after newer live samples); returns true when
   * the line must be redrawn.
   */
  push(samples: readonly Sample[]): boolean {
    let changed = false;
    const pts = this.#points;
    for (const [t, v] of samples) {
      const y = typeof v === 'boolean' ? (v ? 1 : 0) : v;
      if (!Number.isFinite(y)) continue;
      const bucket = Math.floor(t / this.#stepMs);
      // Points are few (≤ max): scan back from the newest.
      let i = pts.length - 1;
      while (i >= 0 && Math.floor((pts[i] as [number, number])[0] / this.#stepMs) > bucket) i--;
      const at = pts[i];
      if (at && Math.floor(at[0] / this.#stepMs) === bucket) {
        if (t >= at[0]) {
          at[0] = t;
          at[1] = y;
          changed = true;
        }
        continue;
      }
      if (i < 0 && pts.length >= this.#max) continue; // older than everything kept
      pts.splice(i + 1, 0, [t, y]);
      if (pts.length > this.#max) pts.shift();
      changed = true;
    }
    return changed;
  }

  render(): void {
    const pts = this.#points;
    if (pts.length < 2) {
      this.#line.setAttribute('points', '');
      return;
    }
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for (const [, y] of pts) {
      if (y < lo) lo = y;
      if (y > hi) hi = y;
    }
    const t0 = (pts[0] as [number, number])[0];
    const t1 = (pts[pts.length - 1] as [number, number])[0];
    const span = t1 - t0 || 1;
    const range = hi - lo || 1;
    const out: string[] = [];
    for (const [t, y] of pts) {
      const x = ((t - t0) / span) * W;
      const yy = H - 2 - ((y - lo) / range) * (H - 4);
      out.push(`${x.toFixed(1)},${yy.toFixed(1)}`);
    }
    this.#line.setAttribute('points', out.join(' '));
  }
}
