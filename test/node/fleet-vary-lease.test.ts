/**
 * Promise 1 for a page with `Vary`: one origin request per variant per lifetime, fleet-wide.
 * A member that had not yet seen the page's Vary asked for it by the URL's primary key, and
 * took that key's lease; a member that knew the Vary filled the variant under the variant's
 * own lease. Two leases for one variant: the same page was fetched twice side by side, within
 * its lifetime (the seeded fleet check saw `/vary/N` asked again 7 to 181 ms into its 2 s).
 */
import { afterEach, describe, expect, it } from "vitest";
import type { ServerResponse } from "node:http";
import { closeDeployed, deployBehind, send } from "./deployment.ts";

afterEach(closeDeployed);
const tick = (ms = 100) => new Promise((r) => setTimeout(r, ms));

describe("a fleet filling a page with Vary", () => {
  it("asks the origin once per variant when members learn the Vary at different times", async () => {
    const asked: string[] = [];
    const held: [ServerResponse, string][] = [];
    const answer = ([res, lang]: [ServerResponse, string]) =>
      res
        .writeHead(200, { vary: "accept-language", "cache-control": "max-age=60", "content-type": "text/plain" })
        .end(`page in ${lang}`);
    const d = await deployBehind(
      "fleet",
      (req, res) => {
        const lang = String(req.headers["accept-language"]);
        asked.push(lang);
        held.push([res, lang]);
      },
      {},
      2,
    );
    const [a, b] = d.urls as [string, string];
    const ask = (url: string, lang: string) => send(url, "/v", { headers: { "accept-language": lang } });
    // Member a fills the URL (its first answer tells the Vary); a French reader joins it there,
    // another waits on its lease from member b. Neither member knows the page varies yet.
    const de = ask(a, "de");
    await tick();
    const frOnA = ask(a, "fr");
    const frOnB = ask(b, "fr");
    await tick(200);
    expect(asked).toEqual(["de"]);
    answer(held.shift()!);
    // Member a's reader now fills the French variant; member b's, heard the lease go, looks again.
    await tick(300);
    for (const call of held.splice(0)) answer(call);
    const answers = await Promise.all([de, frOnA, frOnB]);
    expect(answers.map((x) => x.body)).toEqual(["page in de", "page in fr", "page in fr"]);
    // Before: ["de", "fr", "fr"], the French page fetched by both members at once.
    expect(asked).toEqual(["de", "fr"]);
    expect((await ask(b, "fr")).cacheStatus).toMatch(/hit/);
  });
});
