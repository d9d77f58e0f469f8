import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "node",
          include: [
            "src/core/**/*.test.ts",
            "src/node/**/*.test.ts",
            "fixtures/**/*.test.ts",
            "test/node/**/*.test.ts",
          ],
          environment: "node",
          testTimeout: 30_000,
        },
      },
      // Workers tests run inside workerd via @cloudflare/vitest-pool-workers.
      "./vitest.workers.config.ts",
    ],
  },
});
