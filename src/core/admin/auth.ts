/**
 * How the admin API knows its operator: the token (compared in constant time), the
 * dashboard's session cookie (an HMAC'd expiry, never the token), and a per-client brake on
 * wrong tokens. WebCrypto only, so both runtimes share it.
 */

/** How long a dashboard session lasts before the token must be given again. */
export const SESSION_TTL_MS = 8 * 3600_000;

const encoder = new TextEncoder();

/** Compares digests, so neither the token's length nor its prefix leaks through timing. */
export async function tokenMatches(presented: string | null, expected: string): Promise<boolean> {
  if (presented === null) return false;
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(presented)),
    crypto.subtle.digest("SHA-256", encoder.encode(expected)),
  ]);
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** The HMAC key of the sessions, derived from the token: a new token ends every session. */
let signingKey: { token: string; key: Promise<CryptoKey> } | undefined;

function keyFor(token: string): Promise<CryptoKey> {
  if (signingKey?.token !== token) {
    const key = crypto.subtle.importKey(
      "raw",
      encoder.encode(`herdless-session-v1\0${token}`),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
    signingKey = { token, key };
  }
  return signingKey.key;
}

/**
 * A new session value: `<expiresAt>.<nonce>.<signature>`, all base64url or digits, so a
 * cookie never needs decoding. Holding it grants the dashboard until `expiresAt`, and
 * nothing about the token can be learnt from it.
 */
export async function createSession(token: string, now: number): Promise<string> {
  const nonce = base64url(crypto.getRandomValues(new Uint8Array(16)));
  const payload = `${now + SESSION_TTL_MS}.${nonce}`;
  const signature = await crypto.subtle.sign("HMAC", await keyFor(token), encoder.encode(payload));
  return `${payload}.${base64url(new Uint8Array(signature))}`;
}

const SESSION_SHAPE = /^(\d{1,16})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;

/** Whether `value` is a session this token signed that has not expired; any malformed value is simply not one. */
export async function sessionValid(value: string | null, token: string, now: number): Promise<boolean> {
  const match = value === null ? null : SESSION_SHAPE.exec(value);
  if (!match) return false;
  const [, expiresAt, nonce, signature] = match;
  if (Number(expiresAt) <= now) return false;
  const bytes = fromBase64url(signature ?? "");
  if (!bytes) return false;
  return crypto.subtle.verify("HMAC", await keyFor(token), bytes, encoder.encode(`${expiresAt}.${nonce}`));
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array<ArrayBuffer> | undefined {
  try {
    const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  } catch {
    return undefined;
  }
}

export interface AttemptLimiterOptions {
  /** Wrong tokens a client may send before it is slowed down. */
  freeFailures?: number;
  /** The longest a client is made to wait between two attempts. */
  maxDelayMs?: number;
  /** Clients remembered at once; the least recently failing are forgotten first. */
  maxClients?: number;
}

interface Failures {
  count: number;
  /** No token from this client is checked before this instant. */
  blockedUntil: number;
}

/**
 * Slows down token guessing per client: after `freeFailures` wrong tokens, each further
 * attempt must wait twice as long as the previous one (1 s, 2 s, 4 s … up to `maxDelayMs`),
 * and is refused without being checked until then. A right token clears the client; a
 * client quiet for `maxDelayMs` (or twice its last delay) starts over. Memory is bounded: at
 * most `maxClients` are remembered, the least recently failing forgotten first.
 */
export class AttemptLimiter {
  private readonly clients = new Map<string, Failures>();
  private readonly freeFailures: number;
  private readonly maxDelayMs: number;
  private readonly maxClients: number;

  constructor(options: AttemptLimiterOptions = {}) {
    this.freeFailures = options.freeFailures ?? 10;
    this.maxDelayMs = options.maxDelayMs ?? 5 * 60_000;
    this.maxClients = options.maxClients ?? 10_000;
  }

  /** Milliseconds `client` must still wait before a token it sends is checked (0: check now). */
  waitMs(client: string, now: number): number {
    const entry = this.clients.get(addressBlock(client));
    return entry ? Math.max(0, entry.blockedUntil - now) : 0;
  }

  failed(address: string, now: number): void {
    const client = addressBlock(address);
    const entry = this.clients.get(client) ?? { count: 0, blockedUntil: 0 };
    // A client quiet for long enough starts over: the brake is for bursts of guesses.
    if (now >= entry.blockedUntil + Math.max(this.maxDelayMs, this.delayAfter(entry.count) * 2)) entry.count = 0;
    entry.count++;
    entry.blockedUntil = now + this.delayAfter(entry.count);
    this.clients.delete(client);
    this.clients.set(client, entry);
    if (this.clients.size > this.maxClients) {
      const oldest = this.clients.keys().next().value;
      if (oldest !== undefined) this.clients.delete(oldest);
    }
  }

  succeeded(client: string): void {
    this.clients.delete(addressBlock(client));
  }

  /** Clients remembered now (for tests and stats). */
  get size(): number {
    return this.clients.size;
  }

  private delayAfter(count: number): number {
    if (count < this.freeFailures) return 0;
    return Math.min(this.maxDelayMs, 1000 * 2 ** Math.min(30, count - this.freeFailures));
  }
}

/**
 * The addresses one client holds, as the brake counts them: an IPv6 address by its /64, the
 * block a single host or home network is given (RFC 6177), which it can pick any address in
 * (privacy addresses change daily on their own): counted per address, each guess from a new one
 * got ten more free, unslowed. An IPv4 address (also mapped into IPv6) is its own, as is
 * anything else.
 *
 * @example
 * addressBlock("2001:db8:1:2:aaaa::1"); // "2001:db8:1:2::/64"
 * addressBlock("::ffff:192.0.2.7"); // "192.0.2.7"
 */
export function addressBlock(address: string): string {
  const bare = address.startsWith("[") && address.endsWith("]") ? address.slice(1, -1) : address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  if (mapped) return mapped[1]!;
  if (!bare.includes(":") || !/^[0-9a-f:.]+$/i.test(bare)) return address;
  const [head = "", tail] = bare.split("::");
  const front = head === "" ? [] : head.split(":");
  const back = tail === undefined || tail === "" ? [] : tail.split(":");
  // `a:b::c`: the groups `::` stands for are zeros; without `::` all eight are written.
  const zeros = tail === undefined ? 0 : Math.max(0, 8 - front.length - back.length);
  const groups = [...front, ...Array<string>(zeros).fill("0"), ...back];
  const prefix = groups.slice(0, 4).map((group) => (Number.parseInt(group, 16) || 0).toString(16));
  return `${prefix.join(":")}::/64`;
}
