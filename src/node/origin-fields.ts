/**
 * The request's fields in the order the caller gave them (the client's, then herdless's), a
 * repeated name joined with ", " in its first place, as Headers joins it: the origin reads one
 * value, the one a variant is keyed by. Headers alone would also sort the names.
 *
 * @example
 * inOrder([["X-A", "1"], ["host", "shop"], ["x-a", "2"]]); // [["x-a", "1, 2"], ["host", "shop"]]
 */
export function inOrder(init: HeadersInit | undefined): [string, string][] {
  const joined = new Headers(init);
  const order = Array.isArray(init) ? init.map(([name]) => name) : [...joined.keys()];
  const fields: [string, string][] = [];
  const seen = new Set<string>();
  for (const name of order) {
    const lower = name.toLowerCase();
    if (seen.has(lower)) continue;
    seen.add(lower);
    fields.push([lower, joined.get(lower)!]);
  }
  return fields;
}

/**
 * Node's raw header list (name, value, name, …) as Headers.
 *
 * @example
 * fieldsOf(incoming.rawHeaders).get("upgrade"); // "websocket"
 */
export function fieldsOf(raw: string[]): Headers {
  const headers = new Headers();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    try {
      headers.append(raw[i]!, raw[i + 1]!);
    } catch {
      // A field no Headers can hold (a name that is not a token): dropped, as fetch drops it.
    }
  }
  return headers;
}
