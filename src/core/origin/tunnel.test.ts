import { describe, expect, it } from "vitest";
import { parseConfig } from "../config.ts";
import { headerList } from "../http/http.ts";
import { opensTunnel, TunnelSlots } from "./tunnel.ts";

const config = parseConfig({ origin: { url: "http://origin.test" } });
const upgrade = (value: string) => headerList([["upgrade", value]]);

describe("opensTunnel", () => {
  it("opens for a GET whose Upgrade is websocket alone, in any case", () => {
    expect(opensTunnel(config, "GET", "/cable", upgrade("websocket"))).toBe(true);
    expect(opensTunnel(config, "GET", "/cable", upgrade(" WebSocket "))).toBe(true);
  });

  it("never for another protocol, a list, another method, the admin API or with the switch off", () => {
    expect(opensTunnel(config, "GET", "/", upgrade("h2c"))).toBe(false);
    expect(opensTunnel(config, "GET", "/", upgrade("websocket, h2c"))).toBe(false);
    expect(opensTunnel(config, "GET", "/", headerList([]))).toBe(false);
    expect(opensTunnel(config, "POST", "/", upgrade("websocket"))).toBe(false);
    expect(opensTunnel(config, "GET", "/__herdless/stats", upgrade("websocket"))).toBe(false);
    const off = parseConfig({ origin: { url: "http://origin.test", webSockets: false } });
    expect(opensTunnel(off, "GET", "/cable", upgrade("websocket"))).toBe(false);
  });
});

describe("TunnelSlots", () => {
  it("gives out at most its cap, and a slot again once one is freed (once, however often freed)", () => {
    const slots = new TunnelSlots(() => 2);
    const first = slots.take();
    expect(slots.take()).toBeDefined();
    expect(slots.take()).toBeUndefined();
    first?.();
    first?.();
    expect(slots.take()).toBeDefined();
    expect(slots.take()).toBeUndefined();
  });
});
