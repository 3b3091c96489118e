import { setFlagsFromString } from 'node:v8';

/**
 * Caps how far V8 lets the old generation grow past what its last full collection kept, at
 * `percent` (HUB_HEAP_GROWTH_PERCENT; 0 keeps V8's own choice). Under a fast stream, frames in flight
 * live through the commit, outlive young-generation collections and are promoted; V8 then lets the
 * old generation grow up to 4× before collecting again, so memory would follow the frame rate, not
 * the hub's live data (docs/performance.md, "Heap growth"). Not a heap limit: live data is never
 * refused because of it. Process-wide, so the process entry calls it once at start, never buildHub.
 */
export function applyHeapGrowth(percent: number): void {
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
}
