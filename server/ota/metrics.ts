/** OTA metrics on the hub's registry (one set per registry, however many parts ask for them). */
import { Counter, Gauge } from 'prom-client';
import { metricsPerRegistry } from '../metrics/per-registry.ts';

export const otaMetrics = metricsPerRegistry((registers) => ({
  uploads: new Counter({
    name: 'hub_ota_uploads_total',
    help: 'OTA image uploads by outcome: stored, duplicate (same bytes already stored), signature_invalid, too_large, full, not_configured, bad_request.',
    labelNames: ['outcome'] as const,
    registers,
  }),
  downloadBytes: new Counter({
    name: 'hub_ota_download_bytes_total',
    help: 'Image bytes sent to boards over GET /v1/ota/images/:id.',
    registers,
  }),
  downloadsActive: new Gauge({
    name: 'hub_ota_downloads_active',
    help: 'OTA downloads being sent right now (at most OTA_MAX_CONCURRENT_DOWNLOADS).',
    registers,
  }),
  downloads: new Counter({
    name: 'hub_ota_downloads_total',
    help: 'OTA downloads by outcome: complete (every requested byte sent), aborted (the board went away).',
    labelNames: ['outcome'] as const,
    registers,
  }),
  refusals: new Counter({
    name: 'hub_ota_download_refusals_total',
    help: 'OTA download requests refused, by reason: credential (401), busy (503 + Retry-After), not_found, range (416).',
    labelNames: ['reason'] as const,
    registers,
  }),
  boards: new Gauge({
    name: 'hub_ota_boards',
    help: 'Boards of the OTA campaigns the hub holds, by state (pending, sent, downloading, succeeded, failed, rolled_back, timed_out).',
    labelNames: ['state'] as const,
    registers,
  }),
}));

export type OtaMetrics = ReturnType<typeof otaMetrics>;
