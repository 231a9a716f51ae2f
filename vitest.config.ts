import { configDefaults, defineConfig } from 'vitest/config';

// Three projects: fast pure unit tests beside the code; host tests beside the code
// that need root and the real netfilter tools but no lab; and the end-to-end suite
// that drives real sshd and netfilter in network namespaces (root required).
const HOST_TESTS = 'src/**/*.host.test.ts';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts'],
          exclude: [...configDefaults.exclude, HOST_TESTS],
          sequence: { groupOrder: 0 },
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'host',
          include: [HOST_TESTS],
          // Beside the unit tests: each host test brings its own throwaway namespace.
          sequence: { groupOrder: 0 },
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/**/*.test.ts'],
          // After the unit tests, in their own group.
          sequence: { groupOrder: 1 },
          testTimeout: 300_000,
          hookTimeout: 180_000,
          // Each e2e file builds its own lab; two at a time fits 2 cores.
          maxWorkers: 2,
          // Empties test-results/reliability.jsonl once per run (npm run reliability reads it).
          globalSetup: ['test/reliability-setup.ts'],
          fileParallelism: true,
        },
      },
    ],
  },
});
