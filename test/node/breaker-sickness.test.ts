import { afterEach, describe, expect, it } from "vitest";
import { deploy, send, type Deployment } from "./deployment.ts";
import { startGatedOrigin, type GatedOrigin } from "./gated-origin.ts";

let origin: GatedOrigin | undefined;
let deployment: Deployment | undefined;
afterEach(async () => {
  await deployment?.close();
  await origin?.close();
});

describe.each(["node", "fleet"] as const)("the breaker opens on a sick origin, not on one broken URL (%s)", (kind) => {
  it(
    "100 consecutive 500s from one URL and 100 TRACE + 100 Expect requests leave every other URL and every POST served",
    { timeout: 60_000 },
    async () => {
      // An origin with one broken page (/broken answers 500, as an application bug would).
      origin = await startGatedOrigin("max-age=60");
      // As sensitive as it gets: any two sick calls, even from one URL, would open it.
      deployment = await deploy(kind, origin.url, { breaker: { failureThreshold: 2, minFailingKeys: 1 } });
      const { urls } = deployment;
      const member = (i: number) => urls[i % urls.length]!;
      for (let i = 0; i < 100; i++) expect((await send(member(i), "/broken")).status).toBe(500);
      for (let i = 0; i < 100; i++) {
        // Requests the runtime will not send as they are: never counted against the origin.
        await send(member(i), `/page${i}`, { method: "TRACE" });
        await send(member(i), `/upload${i}`, {
          method: "POST",
          body: "x".repeat(100),
          headers: { expect: "100-continue" },
        }).catch(() => undefined);
      }
      const refused: string[] = [];
      for (let i = 0; i < 30; i++) {
        const page = await send(member(i), `/other${i}`);
        if (page.status !== 200) refused.push(`GET /other${i}: ${page.status} ${page.cacheStatus}`);
        const login = await send(member(i), "/login", { method: "POST", body: "user=a" });
        if (login.status !== 200) refused.push(`POST /login: ${login.status} ${login.cacheStatus}`);
      }
      expect(refused).toEqual([]);
      // Each 500 went to the origin (an error is shared only with its own waiters), and so did every other request.
      expect(origin.requests("/broken")).toBe(100);
      expect(origin.requests("/login")).toBe(30);
    },
  );
});
