import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineProject } from "vitest/config";
import { TEST_ORIGIN_KEY } from "./test/cloudflare/origin-protocol.ts";

// Nothing may leave the machine: Miniflare would otherwise fetch the `request.cf` object
// from Cloudflare, and wrangler would send metrics. The pool builds Miniflare's shared
// options itself, so the env variable is the way to say `cf: false` here.
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
process.env.WRANGLER_SEND_METRICS = "false";

/** Workers tests: run inside workerd with the bindings of wrangler.jsonc. */
export default defineProject({
  plugins: [
    cloudflareTest(({ inject }) => ({
      main: "./src/cloudflare/worker.ts",
      wrangler: { configPath: "./wrangler.jsonc" },
      miniflare: {
        // The shared namespace of the counting test origin; tests that count requests
        // make their own namespace with testOrigin() instead. With this env the Worker
        // relays everything (a plain proxy, as test-origin.test.ts expects); tests of the
        // cache pass their own HERDLESS_CONFIG.
        bindings: {
          ORIGIN_URL: `${inject(TEST_ORIGIN_KEY)}/o/shared`,
          HERDLESS_CONFIG: JSON.stringify({ defaults: { bypass: true } }),
        },
      },
    })),
  ],
  test: {
    name: "workers",
    include: ["test/cloudflare/**/*.test.ts", "src/cloudflare/**/*.test.ts"],
    globalSetup: ["./vitest.workers.setup.ts", "./vitest.workers.noise.ts"],
    testTimeout: 30_000,
  },
});
