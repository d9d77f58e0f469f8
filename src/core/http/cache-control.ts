/**
 * Cache-Control (RFC 9111 §5.2) parsing; the fields that target this cache alone
 * (CDN-Cache-Control, Surrogate-Control) are read by targeted-cache-control.ts.
 *
 * Cache-Control is hand-parsed rather than taken from http-cache-semantics: that library
 * decides freshness from Cache-Control alone, in seconds relative to "now", with no notion of
 * CDN-Cache-Control precedence (RFC 9213) or operator overrides, while herdless stores
 * absolute instants; and RFC 9111's list syntax must be read leniently, which no structured
 * field parser does.
 */

/** Parsed directives: names lowercased; value unquoted string, or true for a bare directive. */
export type Directives = ReadonlyMap<string, string | true>;

/** RFC 9111 §1.2.2: delta-seconds too large to represent are taken as 2^31 seconds. */
export const MAX_DELTA_SECONDS = 2 ** 31;

/**
 * Directives whose duplicates with different values make the response stale (RFC 9111 §4.2.1).
 * Such a conflict is recorded as the empty value, which no delta-seconds reader accepts.
 */
export const FRESHNESS_DIRECTIVES: ReadonlySet<string> = new Set([
  "max-age",
  "s-maxage",
  "stale-while-revalidate",
  "stale-if-error",
]);

/** The value stored for a conflicting duplicate freshness directive: present but malformed. */
const CONFLICT = "";

/**
 * Parses a Cache-Control (or CDN-Cache-Control) field value, RFC 9110 §5.6.1 list syntax.
 * Lenient where the RFC lets recipients be: empty elements and stray whitespace are skipped,
 * and the first of duplicate directives wins. A value followed by junk is spoiled
 * (`max-age=60 30`), and the junk is read on as further directives: `max-age=3600; private`
 * (a `;` where a `,` belongs, a common slip) or `max-age=60 no-store` still say private and
 * no-store, as they do to nginx and Varnish, which look for these words anywhere in the field;
 * dropping them with the rest of the element would share a personal page.
 *
 * @example
 * parseCacheControl('Max-Age=60, no-cache="set-cookie, x-a"');
 * // Map { "max-age" => "60", "no-cache" => "set-cookie, x-a" }
 */
export function parseCacheControl(value: string | null | undefined): Directives {
  const directives = new Map<string, string | true>();
  if (!value) return directives;
  const scanner = new Scanner(value);
  // An element that does not start with a directive is dropped whole; junk after one is read on.
  let elementStart = true;
  while (!scanner.done()) {
    if (scanner.skipSeparators()) elementStart = true;
    if (scanner.done()) break;
    const parsed = parseDirective(scanner);
    if (parsed) addDirective(directives, parsed[0], parsed[1]);
    else if (elementStart) scanner.skipElementRest();
    else scanner.skipUnparseable();
    elementStart = false;
  }
  return directives;
}

/**
 * A delta-seconds directive (RFC 9111 §1.2.2) in milliseconds; undefined when absent or
 * malformed (not a non-negative integer, bare, or a conflicting duplicate).
 *
 * @example
 * deltaSecondsMs(parseCacheControl("max-age=60"), "max-age"); // 60_000
 */
export function deltaSecondsMs(d: Directives, name: string): number | undefined {
  const value = d.get(name);
  return typeof value === "string" ? parseDeltaSecondsMs(value) : undefined;
}

/**
 * One delta-seconds value (`1*DIGIT`, RFC 9111 §1.2.2) in milliseconds, clamped at 2^31 s;
 * undefined unless the whole string is digits. Also reads the Age header.
 *
 * @example
 * parseDeltaSecondsMs("30"); // 30_000
 */
export function parseDeltaSecondsMs(value: string): number | undefined {
  if (!/^[0-9]+$/.test(value)) return undefined;
  return Math.min(Number(value), MAX_DELTA_SECONDS) * 1000;
}

/**
 * Directives that name header fields when qualified (RFC 9111 §5.2.2.4 no-cache, §5.2.2.7
 * private). Repeats combine: the bare form wins (it covers every field), qualified lists join.
 */
const FIELD_LIST_DIRECTIVES = new Set(["no-cache", "private"]);

function addDirective(directives: Map<string, string | true>, name: string, given: string | true): void {
  const value = FIELD_LIST_DIRECTIVES.has(name) && typeof given === "string" && !fieldNames(given) ? true : given;
  const existing = directives.get(name);
  if (existing === undefined) directives.set(name, value);
  else if (FIELD_LIST_DIRECTIVES.has(name) && existing !== true)
    directives.set(name, value === true ? true : `${existing}, ${value}`);
  else if (FRESHNESS_DIRECTIVES.has(name) && existing !== value) directives.set(name, CONFLICT);
}

/**
 * The field names a qualified `no-cache="…"` or `private="…"` lists (lowercased); empty for
 * the bare form or when absent.
 *
 * @example
 * qualifiedFields(parseCacheControl('private="Set-Cookie, X-User"'), "private"); // ["set-cookie", "x-user"]
 */
export function qualifiedFields(d: Directives, name: "no-cache" | "private"): string[] {
  const value = d.get(name);
  return typeof value === "string" ? (fieldNames(value) ?? []) : [];
}

/**
 * The bare (unqualified) form of `no-cache` or `private`, which covers the whole response;
 * also a qualified form that names no field, or not only field names (`private=`,
 * `private=""`, `private="x-user` unterminated, `private="x-user" junk`): what the origin
 * meant to withhold is unknown, and reading it as "nothing" would share the whole response.
 *
 * @example
 * isBare(parseCacheControl('private=""'), "private"); // true
 * isBare(parseCacheControl('private="x-user"'), "private"); // false
 */
export function isBare(d: Directives, name: "no-cache" | "private"): boolean {
  const value = d.get(name);
  return value === true || (typeof value === "string" && !fieldNames(value));
}

/**
 * RFC 9111 §5.2.2.4 / §5.2.2.7 `#field-name`, lowercased; undefined unless it names at least
 * one field and every element is a token (empty list elements are skipped, RFC 9110 §5.6.1).
 */
function fieldNames(value: string): string[] | undefined {
  const names = value
    .split(",")
    .map((field) => field.trim().toLowerCase())
    .filter((field) => field !== "");
  return names.length > 0 && names.every((field) => FIELD_NAME.test(field)) ? names : undefined;
}

/** RFC 9110 §5.1 field-name = token. */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

/** `token [ "=" ( token / quoted-string ) ]`; undefined when the element has no valid name. */
function parseDirective(scanner: Scanner): [string, string | true] | undefined {
  const name = scanner.token();
  if (name === "") return undefined;
  scanner.skipWhitespace();
  // A bare directive followed by junk (`no-store x`) still counts: dropping it could only share more.
  if (!scanner.eat("=")) return [name.toLowerCase(), true];
  scanner.skipWhitespace();
  const value = scanner.peek() === '"' ? scanner.quotedString() : scanner.bareValue();
  scanner.skipWhitespace();
  // Trailing junk (`max-age=60 30`) makes the value untrustworthy: keep the name, spoil the value.
  return [name.toLowerCase(), scanner.atElementEnd() && value !== undefined ? value : CONFLICT];
}

/** RFC 9110 §5.6.2 tchar. */
const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;

/** A cursor over one field value; every method stops at the end of input. */
class Scanner {
  private i = 0;
  constructor(private readonly text: string) {}

  done(): boolean {
    return this.i >= this.text.length;
  }

  peek(): string | undefined {
    return this.text[this.i];
  }

  eat(char: string): boolean {
    if (this.text[this.i] !== char) return false;
    this.i++;
    return true;
  }

  atElementEnd(): boolean {
    return this.done() || this.peek() === ",";
  }

  /** OWS = *( SP / HTAB ) (RFC 9110 §5.6.3). */
  skipWhitespace(): void {
    while (this.peek() === " " || this.peek() === "\t") this.i++;
  }

  /**
   * Empty list elements and whitespace between elements (RFC 9110 §5.6.1), and the `;` or
   * whitespace that separates directives in a malformed element.
   */
  skipSeparators(): boolean {
    let comma = false;
    for (; " \t,;".includes(this.peek() ?? "x"); this.i++) comma ||= this.peek() === ",";
    return comma;
  }

  token(): string {
    const start = this.i;
    while (!this.done() && TCHAR.test(this.text[this.i] as string)) this.i++;
    return this.text.slice(start, this.i);
  }

  /** An unquoted value: a token, leniently anything up to whitespace, a comma or a `;`. */
  bareValue(): string {
    const start = this.i;
    while (!this.done() && !this.atElementEnd() && !" \t;".includes(this.peek() as string)) this.i++;
    return this.text.slice(start, this.i);
  }

  /** RFC 9110 §5.6.4 quoted-string with quoted-pair escapes; undefined when unterminated. */
  quotedString(): string | undefined {
    this.i++; // opening quote
    let out = "";
    while (!this.done()) {
      const char = this.text[this.i++] as string;
      if (char === '"') return out;
      if (char === "\\" && !this.done()) out += this.text[this.i++];
      else out += char;
    }
    return undefined;
  }

  /** Skips whatever is left of a malformed element, honouring commas inside quoted strings. */
  skipElementRest(): void {
    while (!this.atElementEnd()) this.skipUnparseable();
  }

  /** Skips what cannot start a directive: a quoted string whole (its commas are not separators), else one character. */
  skipUnparseable(): void {
    if (this.peek() === '"') this.quotedString();
    else this.i++;
  }
}
