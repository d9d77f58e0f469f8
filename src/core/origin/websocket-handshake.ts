/** RFC 6455 §1.3: the GUID a server appends to the client's key to prove it read the handshake. */
export const HANDSHAKE_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** RFC 6455 §4.1: a key is a 16-byte nonce in base64, so 22 characters and `==`. */
const KEY_SHAPE = /^[A-Za-z0-9+/]{22}==$/;

/**
 * What is wrong with a handshake's `Sec-WebSocket-Key` (the request's field, `undefined` when
 * absent, two joined with ", "), or undefined for a key RFC 6455 §4.1 allows. Without one key
 * of that shape no `101` can be checked ({@link switchFault}), so such a request never opens a
 * tunnel: it is refused with a `400`, as RFC 6455 §4.2.1 has a server answer a handshake it
 * cannot read (`ws`, nginx's websocket modules, Node's own servers do), rather than relayed
 * as a plain GET, which the client asked to switch and would read the page as a failed switch.
 *
 * @example
 * keyFault("dGhlIHNhbXBsZSBub25jZQ=="); // undefined
 * keyFault(undefined); // "a WebSocket handshake needs a Sec-WebSocket-Key …"
 */
export function keyFault(key: string | undefined): string | undefined {
  if (key === undefined)
    return "a WebSocket handshake needs a Sec-WebSocket-Key (RFC 6455 §4.1): without it the origin's switch cannot be checked";
  if (KEY_SHAPE.test(key.trim())) return undefined;
  return `Sec-WebSocket-Key ${JSON.stringify(key.slice(0, 100))} is not one 16-byte nonce in base64 (RFC 6455 §4.1)`;
}

/**
 * RFC 6455 §4.2.2: the `Sec-WebSocket-Accept` a server that read the handshake with this key
 * answers, base64(SHA-1(key + GUID)). Web Crypto, so either runtime can compute it.
 *
 * @example
 * await webSocketAccept("dGhlIHNhbXBsZSBub25jZQ=="); // "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
 */
export async function webSocketAccept(key: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", new TextEncoder().encode(key + HANDSHAKE_GUID)));
  let binary = "";
  for (const byte of digest) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/**
 * Whether an origin's `101` to a WebSocket handshake is the switch RFC 6455 §4.1 has a client
 * accept: its `Upgrade` is `websocket` (in any case) and its `Sec-WebSocket-Accept` matches the
 * `key` herdless sent ({@link webSocketAccept}, or the runtime's own `acceptOf`). Undefined when
 * it is; otherwise what is wrong.
 * An origin (or an application whose status an attacker can steer) that answers `101` without
 * switching keeps speaking HTTP on that connection: tunnelled, it would read the client's raw
 * requests past every rule herdless applies ("WebSocket smuggling"). Only Node needs the check:
 * on the Worker, workerd's client makes the handshake itself and refuses such a `101`.
 *
 * @example
 * await switchFault(key, "websocket", undefined); // "… no Sec-WebSocket-Accept …"
 */
export async function switchFault(
  key: string | undefined,
  upgrade: string | undefined,
  accept: string | undefined,
  acceptOf: (key: string) => string | Promise<string> = webSocketAccept,
): Promise<string | undefined> {
  if (upgrade?.trim().toLowerCase() !== "websocket")
    return `its Upgrade is ${upgrade === undefined ? "missing" : JSON.stringify(upgrade)}, not websocket`;
  if (key === undefined)
    return "herdless sent no Sec-WebSocket-Key to check it by (is it in origin.stripRequestHeaders?)";
  if (accept === undefined) return "it has no Sec-WebSocket-Accept";
  if (accept.trim() !== (await acceptOf(key.trim())))
    return `its Sec-WebSocket-Accept ${JSON.stringify(accept.slice(0, 100))} does not match the key herdless sent`;
  return undefined;
}
