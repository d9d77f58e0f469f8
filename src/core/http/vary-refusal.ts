/** RFC 9110 §5.6.2: a token, which every field name is. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Why a response's `Vary` keeps it from being stored (RFC 9111 §4.1, RFC 9110 §12.5.5), or
 * undefined when it names request fields a variant can be selected by:
 *
 * - `vary-star`: `*` never matches a later request, so storing it is waste.
 * - `malformed`: a member that names no field (`"Accept-Language"` quoted, `X-Lang;q=1`,
 *   `X Lang`) selects on something no request carries under that name. Stored, the page the
 *   first requester got (an attacker's language) was every visitor's, whatever they sent;
 *   what the origin meant is unknown.
 * - `vary-client`: the `X-Forwarded-For` the origin saw is herdless's (the client's address,
 *   origin/forward.ts), not the header the client sent: keyed by that header, one client's
 *   page would go to every client sending the same (or no) value.
 *
 * Each is answered to its requester and not stored.
 *
 * @example
 * varyRefusal("Accept-Language"); // undefined
 * varyRefusal('"Accept-Language"'); // "malformed"
 */
export function varyRefusal(vary: string | null): "vary-star" | "malformed" | "vary-client" | undefined {
  if (vary === null) return undefined;
  let refusal: "malformed" | "vary-client" | undefined;
  for (const member of vary.split(",")) {
    const name = member.trim();
    if (name === "*") return "vary-star";
    if (name === "") continue;
    if (!TOKEN.test(name)) refusal = "malformed";
    else if (refusal === undefined && name.toLowerCase() === "x-forwarded-for") refusal = "vary-client";
  }
  return refusal;
}
