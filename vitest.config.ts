import { defineConfig } from 'vitest/config';

// Two projects run by the same `npm test`: fast unit tests, and integration tests against real
// servers (InfluxDB, Mosquitto, Chromium, real sockets) which run one file at a time on 2 cores.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
