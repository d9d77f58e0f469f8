/** The content codings herdless asks for, best first; anything else is never requested. */
const CODINGS = ["br", "gzip"] as const;

/**
 * The `Accept-Encoding` sent to the origin and used to select a `Vary: Accept-Encoding`
 * variant: the codings among br and gzip that the client accepts (RFC 9110 §12.5.3: listed
 * with q > 0, or covered by `*`; a weight that is not a qvalue accepts nothing), best first,
 * else `identity`. A client that sends none is
 * given `identity` (most clients without the header cannot decode anything). At most four
 * values exist, so an attacker cannot multiply variants by spelling the header differently,
 * and the function is idempotent: its output normalizes to itself.
 *
 * @example
 * normalizedAcceptEncoding("gzip, deflate, br;q=0.9, zstd"); // "br, gzip"
 * normalizedAcceptEncoding(null); // "identity"
 */
export function normalizedAcceptEncoding(header: string | null): string {
  if (header === null) return "identity";
  const q = new Map<string, number>();
  for (const member of header.split(",")) {
    const [coding = "", ...params] = member.split(";").map((s) => s.trim().toLowerCase());
    if (!coding) continue;
    let weight = 1;
    for (const param of params) {
      if (!/^q\s*=/.test(param)) continue;
      // A weight that is not a qvalue (`q=0.0001`, `q=-1`, `q=`) does not say the coding is
      // wanted: the safe reading is that it is not, so the client is sent what every client reads.
      const match = /^q\s*=\s*([01](?:\.\d{0,3})?)$/.exec(param);
      weight = match ? Number(match[1]) : 0;
    }
    q.set(coding === "x-gzip" ? "gzip" : coding, weight);
  }
  const star = q.get("*");
  const accepted = CODINGS.filter((coding) => (q.get(coding) ?? (star !== undefined ? star : 0)) > 0);
  return accepted.length > 0 ? accepted.join(", ") : "identity";
}
