/**
 * The dashboard in a real browser: headless Chromium (the Debian package) driven by
 * playwright-core, against a herdless Node server in front of the fragile origin.
 *
 * Needs /usr/bin/chromium (or CHROMIUM_PATH): `apt-get install -y chromium`. Without it
 * the suite fails, on purpose, rather than skipping.
 */
import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const TOKEN = "browser-test-token-0123456789";
const SCREENSHOT = join(tmpdir(), "herdless-dashboard.png");
// Every flag matters here: without the background-networking ones Chromium reaches for
// Google services, and the closed network refuses the connections.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--headless",
];

let origin: FragileOrigin;
let proxy: RunningServer;
let browser: Browser | undefined;
let context: BrowserContext;
let page: Page;
/** Every URL the page asked for, and every console error or page error it reported. */
const requested: string[] = [];
const consoleErrors: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: the dashboard browser test needs it. Install it with \`apt-get install -y chromium\` (or set CHROMIUM_PATH).`,
    );
  }
  origin = await startFragileOrigin({ cacheControl: "max-age=300, stale-while-revalidate=60" });
  const logger = jsonLogger("silent");
  const config = parseConfig({ origin: { url: origin.url }, admin: { token: TOKEN, purgePropagationMs: 10 } });
  proxy = await startServer({ stack: localStack({ config, logger }), logger, port: 0 });
  // A plain launch runs on a fresh temporary profile, which Playwright removes on close.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 15_000 });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.on("request", (request) => requested.push(request.url()));
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await proxy?.close();
  await origin?.close();
});

async function get(path: string) {
  const res = await fetch(`${proxy.url}${path}`);
  await res.arrayBuffer();
  return { status: res.status, cacheStatus: res.headers.get("cache-status") ?? "" };
}

const text = async (id: string) => (await page.locator(`#${id}`).textContent()) ?? "";
const chartTotal = async (id: string) => Number((await page.locator(`#${id}`).getAttribute("data-total")) ?? "NaN");

describe("dashboard in Chromium", () => {
  it("asks for the token, refuses a wrong one, opens with the right one", async () => {
    await page.goto(`${proxy.url}/__herdless/`);
    await expect.poll(() => page.locator("#token").isVisible()).toBe(true);
    expect(await page.locator("#login-error").count()).toBe(0);

    await page.fill("#token", "not-the-token-at-all");
    await Promise.all([page.waitForURL(`${proxy.url}/__herdless/login`), page.click("#sign-in")]);
    await expect.poll(() => page.locator("#login-error").textContent()).toContain("not right");
    expect(await page.locator("#chart-requests").count()).toBe(0);
    await page.screenshot({ path: join(tmpdir(), "herdless-login.png") });

    // The login page is answered with 401 (no or wrong token), which Chromium logs as a
    // failed resource load: expected there, and nothing else. From here on, no errors at all.
    expect(consoleErrors.every((message) => message.includes("status of 401"))).toBe(true);
    consoleErrors.length = 0;

    await page.fill("#token", TOKEN);
    await Promise.all([page.waitForURL(`${proxy.url}/__herdless/`), page.click("#sign-in")]);
    await expect.poll(() => page.locator("#chart-requests").count()).toBe(1);
    // The first poll of /__herdless/stats has filled the tiles.
    await expect.poll(() => text("mode")).toBe("node · local");
    expect(await text("breaker")).toBe("closed");
    // The counters are this process's, and the dashboard says so.
    expect(await text("scope")).toBe("this process");
  });

  it("loads nothing from anywhere but the server, and logs no errors", async () => {
    // Let a few polls run, so the steady state is covered too.
    await page.waitForTimeout(1_200);
    expect(requested.length).toBeGreaterThan(0);
    const foreign = requested.filter((url) => new URL(url).origin !== proxy.url);
    expect(foreign).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });

  it("charts and tiles move when traffic flows", async () => {
    const totalBefore = await chartTotal("chart-requests");
    const requestsBefore = Number(await text("requests"));
    const originBefore = Number(await text("origin-total"));
    expect(Number.isFinite(totalBefore)).toBe(true);

    for (let i = 0; i < 5; i++) expect((await get(`/traffic/${i}`)).cacheStatus).toContain("fwd=uri-miss");
    for (let round = 0; round < 3; round++)
      for (let i = 0; i < 5; i++) expect((await get(`/traffic/${i}`)).cacheStatus).toContain("hit");

    await expect.poll(() => chartTotal("chart-requests"), { timeout: 5_000 }).toBeGreaterThanOrEqual(totalBefore + 20);
    await expect
      .poll(async () => Number(await text("requests")), { timeout: 5_000 })
      .toBeGreaterThanOrEqual(requestsBefore + 20);
    await expect.poll(async () => Number(await text("origin-total")), { timeout: 5_000 }).toBe(originBefore + 5);
    expect(await chartTotal("chart-origin")).toBeGreaterThanOrEqual(5);
    // Top keys list the paths just requested.
    expect(await page.locator("#top-keys").textContent()).toContain("/traffic/");

    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  it("a hard purge from the form sends the page back to the origin", async () => {
    expect((await get("/purge-me")).cacheStatus).toContain("stored");
    expect((await get("/purge-me")).cacheStatus).toContain("hit");
    const before = origin.stats().byPath["/purge-me"] ?? 0;

    await page.selectOption("#purge-kind", "urls");
    await page.setChecked("#purge-soft", false);
    await page.fill("#purge-targets", `${proxy.url}/purge-me`);
    await page.click("#purge-submit");
    await expect.poll(() => text("purge-result")).toMatch(/^purged: /);
    expect(await page.locator("#purge-result").getAttribute("data-status")).toBe("200");
    expect(await text("purge-result")).toContain("/purge-me");

    const after = await get("/purge-me");
    expect(after.cacheStatus).toContain("fwd=uri-miss");
    expect(origin.stats().byPath["/purge-me"]).toBe(before + 1);
  });

  it("a soft purge of everything from the form serves stale while one revalidation runs", async () => {
    expect((await get("/soft")).cacheStatus).toContain("stored");
    const before = origin.stats().byPath["/soft"] ?? 0;

    await page.fill("#purge-targets", "");
    await page.selectOption("#purge-kind", "all");
    await page.setChecked("#purge-soft", true);
    await page.click("#purge-submit");
    await expect.poll(() => text("purge-result")).toBe('purged: {"all":true,"soft":true}');

    const stale = await get("/soft");
    expect(stale.status).toBe(200);
    expect(stale.cacheStatus).toContain("detail=stale-while-revalidate");
    // Served stale until the revalidation lands, then fresh again. The page is requested
    // again while waiting: KeyCoordinator.fill reads the clock before applying a soft purge, so
    // when the millisecond turns in between it takes the purged copy for fresh and skips
    // that one revalidation (a core race, reported); the next request revalidates.
    await expect
      .poll(async () => (await get("/soft")).cacheStatus, { timeout: 3_000, interval: 50 })
      .toMatch(/^herdless; hit; ttl=\d+$/);
    // Exactly one revalidation reached the origin, conditional: it answered 304.
    expect(origin.stats().byPath["/soft"]).toBe(before + 1);
    expect(origin.stats().byStatus["304"]).toBe(1);
    expect(consoleErrors).toEqual([]);
  });

  it("the session cookie is HttpOnly, Strict and expiring, and holds no token", async () => {
    const cookie = (await context.cookies(`${proxy.url}/__herdless/`)).find((c) => c.name === "herdless_admin");
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/__herdless/" });
    expect(cookie!.expires).toBeGreaterThan(Date.now() / 1000);
    expect(cookie!.expires).toBeLessThanOrEqual(Date.now() / 1000 + 8 * 3600 + 5);
    expect(cookie!.value).not.toContain(TOKEN);
  });

  it("CSRF: a page on another port (same site, so the Strict cookie rides along) cannot purge", async () => {
    expect((await get("/victim")).cacheStatus).toContain("stored");
    const before = origin.stats().byPath["/victim"] ?? 0;
    // The attacker's page: a form that cannot send application/json, so it sends the JSON as text/plain.
    const attacker: Server = createServer((_, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(`<form id="f" method="post" action="${proxy.url}/__herdless/purge" enctype="text/plain">
<input name='{"all":true,"x":"' value='"}'></form><script>document.getElementById("f").submit()</script>`);
    });
    await new Promise<void>((resolve) => attacker.listen(0, "127.0.0.1", resolve));
    try {
      const evil = await context.newPage();
      const answered = evil.waitForResponse(`${proxy.url}/__herdless/purge`);
      await evil.goto(`http://127.0.0.1:${(attacker.address() as AddressInfo).port}/`);
      const response = await answered;
      expect(response.request().headers()["cookie"] ?? (await response.request().allHeaders()).cookie).toContain(
        "herdless_admin=",
      );
      expect(response.status()).toBe(403);
      await evil.close();
    } finally {
      await new Promise((resolve) => attacker.close(resolve));
    }
    // The victim: the page is still served from the cache, the origin saw nothing more.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await get("/victim")).cacheStatus).toContain("hit");
    expect(origin.stats().byPath["/victim"]).toBe(before);
  });
});
