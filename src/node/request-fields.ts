import type { IncomingHttpHeaders } from "node:http";
import type { HeaderReader } from "../core/http/http.ts";

/** Node's parsed request headers as a {@link HeaderReader}; repeated fields joined with ", ". */
export function headerReader(headers: IncomingHttpHeaders): HeaderReader {
  return {
    get(name: string): string | null {
      const value = headers[name];
      if (value === undefined) return null;
      return Array.isArray(value) ? value.join(", ") : value;
    },
  };
}

/** Node's raw header list (name, value, name, value …) as pairs with lowercased names. */
export function lowercased(raw: readonly string[]): [string, string][] {
  const pairs: [string, string][] = [];
  for (let i = 0; i < raw.length; i += 2) pairs.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
  return pairs;
}
