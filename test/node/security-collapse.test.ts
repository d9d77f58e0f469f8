import type { IncomingMessage, ServerResponse } from "node:http";
import { afterEach, describe, expect, it, vi } from "vitest";
import { get, herdless, servingOrigin, type Herdless, type RawAnswer } from "./attack-kit.ts";

/**
 * What a request collapsed onto another's fill takes, attacked through the Node server: the
 * attacker's request reaches the origin first and is held there, the victims' requests
 * arrive while it runs (they collapse onto it), then the origin answers.
 */

const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** A browser's headers, one browser per `agent`. */
const browser = (agent: string, extra: Record<string, string> = {}) => ({
  "user-agent": `Mozilla/5.0 (X11; Linux x86_64) ${agent}`,
  accept: "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
  "accept-language": "en-US,en;q=0.9",
  ...extra,
});

const VICTIMS = ["Chrome/131.0", "Safari/605.1.15", "Edg/131.0", "OPR/114.0", "Vivaldi/7.0"];

/**
 * An origin whose application crashes on `Accept-Language: xx` (a `500`) and whose WAF
 * refuses `User-Agent: x` (a `400`), or fails every request while `down`; `errorHeaders` go
 * on its errors (a global `max-age`, or none). While `holding`, it keeps its answers until
 * `release()`; every request is counted.
 */
async function fragileOrigin(errorHeaders: Record<string, string>, errorStatus = 500, wafPageBytes = 0) {
  const state = { requests: 0, down: false, holding: true };
  const held: (() => void)[] = [];
  const answer = (req: IncomingMessage, res: ServerResponse) => {
    const waf = req.headers["user-agent"] === "x";
    const failing = state.down || req.headers["accept-language"] === "xx" || req.headers["x-debug"] !== undefined;
    const status = failing ? errorStatus : waf ? 400 : 200;
    const headers = status === 200 ? { "cache-control": "max-age=60" } : errorHeaders;
    res.writeHead(status, { "content-type": "text/plain", ...headers });
    // A WAF's block page past 64 KiB reaches the fill's callers as it arrives (a shared stream).
    const page = status === 400 && wafPageBytes > 0 ? `error 400 ${"x".repeat(wafPageBytes)}` : `error ${status}`;
    res.end(status === 200 ? `the page ${req.url}` : page);
  };
  const url = await servingOrigin((req, res) => {
    state.requests++;
    req.resume();
    if (state.holding) held.push(() => answer(req, res));
    else answer(req, res);
  }, cleanup);
  const release = () => {
    state.holding = false;
    held.splice(0).forEach((send) => send());
  };
  return { url, state, held, release };
}

/**
 * The attacker's request held at the origin, `VICTIMS` arriving while it is, then the origin's
 * answers: the attacker's, then the victims'.
 */
async function collapsedOnto(
  proxy: Herdless,
  origin: Awaited<ReturnType<typeof fragileOrigin>>,
  path: string,
  attacker: Record<string, string>,
): Promise<{ attacker: RawAnswer; victims: RawAnswer[] }> {
  const theirs = get(proxy.base, path, { headers: attacker });
  await vi.waitFor(() => expect(origin.held).toHaveLength(1));
  const victims = VICTIMS.map((agent) => get(proxy.base, path, { headers: browser(agent) }));
  // Real time for ordering only: the victims reach the attacker's fill while it is held.
  await new Promise((resolve) => setTimeout(resolve, 100));
  origin.release();
  return { attacker: await theirs, victims: await Promise.all(victims) };
}

async function proxyFor(originUrl: string, extra: Parameters<typeof herdless>[1] = {}): Promise<Herdless> {
  const proxy = await herdless(originUrl, extra);
  cleanup.push(() => proxy.close());
  return proxy;
}

describe("security: a request collapsed onto another's fill never takes that request's unconfirmed error (Node)", () => {
  it.each([
    [
      "the app's 500 to `Accept-Language: xx`, marked max-age",
      { "accept-language": "xx" },
      { "cache-control": "max-age=60" },
      500,
    ],
    ["a WAF's 400 to `User-Agent: x`, marked max-age", { "user-agent": "x" }, { "cache-control": "max-age=60" }, 400],
    ["the app's 500 to `Accept-Language: xx`, with no lifetime", { "accept-language": "xx" }, {}, 500],
  ] as [string, Record<string, string>, Record<string, string>, number][])(
    "CPDoS by collapsing on a cold key: %s is the attacker's; the visitors that waited on its fill get the page, for 1 origin request more, not 1 each",
    async (_what, attack, errorHeaders, status) => {
      const origin = await fragileOrigin(errorHeaders);
      const proxy = await proxyFor(origin.url);
      const { attacker, victims } = await collapsedOnto(proxy, origin, "/home", browser("Firefox/133.0", attack));
      expect(attacker.status).toBe(status);
      for (const victim of victims) expect([victim.status, victim.body]).toEqual([200, "the page /home"]);
      expect(origin.state.requests).toBe(2);
      // The page the victims' one request brought is stored for everyone.
      const later = await get(proxy.base, "/home", { headers: browser("Chrome/131.0") });
      expect([later.status, later.headers["cache-status"]]).toEqual([200, expect.stringMatching(/hit/)]);
      expect(origin.state.requests).toBe(2);
    },
  );

  it("CPDoS by collapsing on a cold key: a WAF's 400 to `User-Agent: x` with a 100 KB block page, marked max-age, streamed to its fill's callers, is the attacker's; the visitors that waited on it get the page", async () => {
    const origin = await fragileOrigin({ "cache-control": "max-age=60" }, 500, 100_000);
    const proxy = await proxyFor(origin.url);
    const { attacker, victims } = await collapsedOnto(
      proxy,
      origin,
      "/home",
      browser("Firefox/133.0", { "user-agent": "x" }),
    );
    expect([attacker.status, attacker.body.length]).toEqual([400, 100_010]);
    for (const victim of victims) expect([victim.status, victim.body]).toEqual([200, "the page /home"]);
    expect(origin.state.requests).toBe(2);
  });

  it("CPDoS by collapsing, confirmed by the attacker: two requests with the attacker's own `X-Debug` and two User-Agents ahead of the visitors on a cold key; the visitors that waited get the page, and so does the next one", async () => {
    const origin = await fragileOrigin({ "cache-control": "max-age=60" });
    const proxy = await proxyFor(origin.url);
    const first = get(proxy.base, "/home", { headers: browser("curl/8.1", { "x-debug": "1" }) });
    await vi.waitFor(() => expect(origin.held).toHaveLength(1));
    const second = get(proxy.base, "/home", { headers: browser("curl/8.2", { "x-debug": "2" }) });
    // Real time for ordering only: the attacker's second request joins the fill first, then the visitors.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const waiting = VICTIMS.map((agent) => get(proxy.base, "/home", { headers: browser(agent) }));
    await new Promise((resolve) => setTimeout(resolve, 100));
    origin.release();
    // The attacker's second request asks again after the visitors: it joins their fill, and gets the page.
    expect([(await first).status, (await second).status]).toEqual([500, 200]);
    for (const victim of await Promise.all(waiting))
      expect([victim.status, victim.body]).toEqual([200, "the page /home"]);
    const later = await get(proxy.base, "/home", { headers: browser("Chrome/131.0") });
    expect([later.status, later.body]).toEqual([200, "the page /home"]);
  });

  it.each([
    ["a 500 marked max-age", { "cache-control": "max-age=60" }],
    ["a 500 with no lifetime", {}],
  ] as [string, Record<string, string>][])(
    "a real outage (%s to everyone): the requests collapsed onto the first fill cost 1 origin request more, not 1 each, and all get the error",
    async (_what, errorHeaders) => {
      const origin = await fragileOrigin(errorHeaders);
      origin.state.down = true;
      const proxy = await proxyFor(origin.url);
      const theirs = get(proxy.base, "/down", { headers: browser("Firefox/133.0") });
      await vi.waitFor(() => expect(origin.held).toHaveLength(1));
      const waiting = VICTIMS.map((agent) => get(proxy.base, "/down", { headers: browser(agent) }));
      // Real time for ordering only: the victims reach the first fill while it is held.
      await new Promise((resolve) => setTimeout(resolve, 100));
      // Its answer alone: the victims ask again, and the second fill is held until they all joined it
      // (answered at once, it could end before the last of them asked, who would ask a third time).
      origin.held.splice(0).forEach((send) => send());
      await vi.waitFor(() => expect(origin.held).toHaveLength(1));
      await new Promise((resolve) => setTimeout(resolve, 100));
      origin.release();
      const [first, victims] = [await theirs, await Promise.all(waiting)];
      expect(first.status).toBe(500);
      for (const victim of victims) expect([victim.status, victim.body]).toEqual([500, "error 500"]);
      expect(origin.state.requests).toBe(2);
    },
  );

  it("with a stale copy the error does not hide: the attacker's 500 to `Accept-Language: xx` at the page's expiry is never the victims', who waited on its fill", async () => {
    const origin = await fragileOrigin({ "cache-control": "max-age=60" });
    origin.state.holding = false;
    const proxy = await proxyFor(origin.url);
    expect((await get(proxy.base, "/news", { headers: browser("Chrome/131.0") })).status).toBe(200);
    proxy.clock.advance(61_000);
    origin.state.holding = true;
    const { attacker, victims } = await collapsedOnto(
      proxy,
      origin,
      "/news",
      browser("Firefox/133.0", { "accept-language": "xx" }),
    );
    expect(attacker.status).toBe(500);
    for (const victim of victims) expect([victim.status, victim.body]).toEqual([200, "the page /news"]);
    expect(origin.state.requests).toBe(3);
  });
});

describe("security: one request's own failures never back a key off for others (Node)", () => {
  it("an attacker's `Accept-Language: xx` that the gateway answers 502 to, asked twice on a cold key, backs the key off for the attacker alone; a visitor still reaches the origin and gets the page", async () => {
    const origin = await fragileOrigin({ "cache-control": "no-store" }, 502);
    origin.state.holding = false;
    const proxy = await proxyFor(origin.url);
    const attacker = browser("Firefox/133.0", { "accept-language": "xx" });
    // A sick status is asked again once, then the key waits (key-backoff.ts): for this request.
    expect((await get(proxy.base, "/home", { headers: attacker })).status).toBe(502);
    expect((await get(proxy.base, "/home", { headers: attacker })).status).toBe(502);
    const refused = await get(proxy.base, "/home", { headers: attacker });
    expect([refused.status, refused.headers["cache-status"]]).toEqual([503, expect.stringMatching(/detail=backoff/)]);
    expect(origin.state.requests).toBe(2);
    const victim = await get(proxy.base, "/home", { headers: browser("Chrome/131.0") });
    expect([victim.status, victim.body]).toEqual([200, "the page /home"]);
    expect(origin.state.requests).toBe(3);
  });

  it("a real outage still backs the key off for everyone: once two different visitors got the 502, a third is refused without an origin request", async () => {
    const origin = await fragileOrigin({ "cache-control": "no-store" }, 502);
    origin.state.holding = false;
    origin.state.down = true;
    const proxy = await proxyFor(origin.url);
    expect((await get(proxy.base, "/down", { headers: browser("Chrome/131.0") })).status).toBe(502);
    expect((await get(proxy.base, "/down", { headers: browser("Safari/605.1.15") })).status).toBe(502);
    const third = await get(proxy.base, "/down", { headers: browser("Edg/131.0") });
    expect([third.status, third.headers["cache-status"]]).toEqual([503, expect.stringMatching(/detail=backoff/)]);
    expect(origin.state.requests).toBe(2);
  });

  it("the requests collapsed onto an outage's first fill confirm it: the next visitor is refused by the key's backoff", async () => {
    const origin = await fragileOrigin({ "cache-control": "no-store" }, 502);
    origin.state.down = true;
    const proxy = await proxyFor(origin.url);
    const { victims } = await collapsedOnto(proxy, origin, "/down", browser("Firefox/133.0"));
    for (const victim of victims) expect(victim.status).toBe(502);
    expect(origin.state.requests).toBe(2);
    const next = await get(proxy.base, "/down", { headers: browser("Chrome/131.0") });
    expect([next.status, next.headers["cache-status"]]).toEqual([503, expect.stringMatching(/detail=backoff/)]);
    expect(origin.state.requests).toBe(2);
  });
});
