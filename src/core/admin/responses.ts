/** What an admin route answers; the adapters write it out as it is. */
export interface AdminResponse {
  status: number;
  headers: [string, string][];
  body: string;
}

/** An admin request as each runtime's adapter hands it over. */
export interface AdminRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  headers: { get(name: string): string | null };
  /** Reads the body as text; rejects past `limit` bytes. */
  text(limit: number): Promise<string>;
  /** Whether the client reached herdless over https (the session cookie is then `Secure`). */
  https: boolean;
  /** Who is asking, for slowing down token guesses: the client's address. */
  client: string;
}

export const NO_STORE: [string, string] = ["cache-control", "no-store"];
/** On every admin answer: never framed, never sniffed, never leaks the admin URL onwards. */
export const SECURITY_HEADERS: [string, string][] = [
  ["x-frame-options", "DENY"],
  ["x-content-type-options", "nosniff"],
  ["referrer-policy", "no-referrer"],
];

/** A JSON answer; `extra` headers after the security ones. */
export function json(status: number, body: unknown, extra: [string, string][] = []): AdminResponse {
  return {
    status,
    headers: [["content-type", "application/json"], NO_STORE, ...SECURITY_HEADERS, ...extra],
    body: JSON.stringify(body),
  };
}

/** A plain-text answer (the Prometheus exposition). */
export function text(status: number, body: string): AdminResponse {
  return {
    status,
    headers: [["content-type", "text/plain; charset=utf-8"], NO_STORE, ...SECURITY_HEADERS],
    body: `${body}\n`,
  };
}

/** A page of the dashboard: scripts and styles inline only, talking to this origin only. */
export function html(status: number, body: string): AdminResponse {
  return {
    status,
    headers: [
      ["content-type", "text/html; charset=utf-8"],
      NO_STORE,
      ...SECURITY_HEADERS,
      [
        "content-security-policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'",
      ],
    ],
    body,
  };
}
