import { describe, expect, it } from "vitest";
import { keyFault, switchFault, webSocketAccept } from "./websocket-handshake.ts";

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";

describe("WebSocket handshake checks (RFC 6455 §4.1)", () => {
  it("computes the accept of RFC 6455 §1.3's example", async () => {
    expect(await webSocketAccept(KEY)).toBe("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  });

  it("takes a 101 for a switch only with Upgrade: websocket (any case) and the key's accept", async () => {
    expect(await switchFault(KEY, "WebSocket", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")).toBeUndefined();
    expect(await switchFault(KEY, "websocket", undefined)).toMatch(/no Sec-WebSocket-Accept/);
    expect(await switchFault(KEY, "websocket", "AAAA")).toMatch(/does not match the key herdless sent/);
    expect(await switchFault(KEY, "h2c", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")).toMatch(/Upgrade is "h2c"/);
    expect(await switchFault(KEY, "websocket, h2c", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")).toMatch(/not websocket/);
    expect(await switchFault(KEY, undefined, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")).toMatch(/Upgrade is missing/);
    expect(await switchFault(undefined, "websocket", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")).toMatch(
      /sent no Sec-WebSocket-Key/,
    );
  });

  it("refuses a handshake without one 16-byte key in base64", () => {
    expect(keyFault(KEY)).toBeUndefined();
    expect(keyFault(undefined)).toMatch(/needs a Sec-WebSocket-Key/);
    expect(keyFault("short==")).toMatch(/not one 16-byte nonce/);
    expect(keyFault(`${KEY}, ${KEY}`)).toMatch(/not one 16-byte nonce/);
  });
});
