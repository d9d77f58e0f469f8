import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/** The examples import the published names; in this repository they mean the sources. */
const source = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  test: {
    projects: [
      {
        resolve: {
          alias: {
            "herdless/core/testing": source("./src/core/store/store-conformance.ts"),
            "herdless/core": source("./src/core/index.ts"),
            "herdless/node/redis": source("./src/node/redis/index.ts"),
            "herdless/node": source("./src/node/index.ts"),
          },
        },
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
