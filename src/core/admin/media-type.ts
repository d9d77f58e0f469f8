const TOKEN_CHARS = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const MEDIA_PARAMETER = new RegExp(`^\\s*${TOKEN_CHARS}=(${TOKEN_CHARS}|"[^"\\\\]*")\\s*$`);

/**
 * Exactly `application/json`, with well-formed parameters (RFC 9110 §8.3.1) if any:
 * `text/plain; application/json`, which a cross-site form may send, is not JSON.
 */
export function isJsonMediaType(contentType: string | null): boolean {
  if (contentType === null) return false;
  const [type, ...parameters] = contentType.split(";");
  if (type?.trim().toLowerCase() !== "application/json") return false;
  return parameters.every((parameter) => MEDIA_PARAMETER.test(parameter));
}
