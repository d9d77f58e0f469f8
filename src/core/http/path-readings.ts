/**
 * The paths an origin server may read a request path as. herdless keys and forwards the path
 * as the WHATWG URL parser serializes it (dot segments resolved, `%2F`, `;` and case kept), but
 * the servers behind it read more into it: nginx, IIS and Spring decode `%2F` and resolve the
 * `..` it makes, Tomcat and Jetty drop `;` path parameters (`..;` is `..`), IIS reads `\` as `/`
 * and drops trailing dots, Express and IIS match routes without case, nginx merges `//`,
 * Express ignores a trailing `/`, some servers decode twice (`%252f`), Spring trims each
 * segment and .NET and Java normalize Unicode (NFKC) or compare without case by upper-casing
 * too (`ı` is `I`). Some end the path before its end: Rails reads `/account.css` as
 * `/account` in the format `css` (and Spring before 5.3 matched `/account.*` to `/account`),
 * OpenLiteSpeed stops at `%00`, and a server that decodes the path before it splits it takes
 * `%23` and `%3F` for the `#` and `?` that end it. A route decided on the serialized path alone
 * is sidestepped by any of them: `/static/..%2faccount` matches `/static/*` while the origin
 * serves `/account` (web cache deception), `/API/user`, `/api%2fuser` or `/api%09/user` miss an
 * `/api/*` bypass that the origin still routes there, and `/account.css`, `/account%00.css` or
 * `/index.php/account` miss an exact `/account` one.
 */

import { routedAs, withoutEnd } from "./path-ends.ts";

/** One reading: the path, and whether routes are matched against it without case. */
export interface PathReading {
  path: string;
  folded: boolean;
}

/**
 * Each way of reading a path, applied in this order (any combination of them), then dot
 * segments resolved. An axis may keep what it worked out for a segment in `memo`, one per
 * path read: the combinations hand it the same segments again.
 */
const AXES: readonly ((path: string, memo: Map<string, string>) => string)[] = [
  decoded,
  windowsPath,
  withoutParameters,
  unicodeRead,
  mergedSlashes,
];

/** At most this many rounds of decoding (`%25252f` is three): each is linear in the path. */
const DECODE_ROUNDS = 3;

/**
 * The longest path read every way: each reading is a pass over the path, and a path built to
 * have the most readings (cuts, framework readings, every escape decoded) costs ~1.5 ms of CPU
 * per KiB, for each request an attacker sends (~12 ms for 64 readings of a 16 KiB path before
 * the cuts). A longer path that could be read another way than without its trailing `/` gets
 * no readings ({@link pathReadings}) and is relayed: real paths with escapes are far shorter.
 */
const READ_MAX_CHARS = 1_024;

/** What any reading but the case-folded one needs: an escape, `;`, `\`, `//`, a trailing `.` or space. */
const COSTLY = /[%;\\]|\/\/|[. ](?:\/|$)/;

/**
 * Every distinct reading of `pathname` other than itself as it is (matched with case), as
 * any combination of decoding, Windows path rules, `;` parameters dropped, the Unicode reading
 * ({@link unicodeRead}) and slashes merged would give it, each then matched with and without
 * case, each also cut where a server may end it (`withoutEnd`) and routed as a framework
 * may (`routedAs`): the path and the path cut are each read in at most 32 combinations, each
 * giving at most 16 paths, each linear in the path's length. Undefined for a path over 1 KiB that has other readings than its case
 * and its trailing `/`: too long to read every way, its caller treats it as ambiguous.
 *
 * @example
 * pathReadings("/static/..;/account")?.map((r) => r.path); // includes "/account"
 */
export function pathReadings(pathname: string): PathReading[] | undefined {
  if (!COSTLY.test(pathname)) {
    // Express's lenient routes (`/login/` is `/login`) among them.
    const paths = new Set(routedAs(pathname));
    return [...paths].flatMap((path) =>
      (path === pathname ? [] : [{ path, folded: false }]).concat({ path, folded: true }),
    );
  }
  if (pathname.length > READ_MAX_CHARS) return undefined;
  const paths = new Set<string>();
  const memo = new Map<string, string>();
  // Every combination of the axes, each worked out once from the one before it: an axis that
  // changes nothing makes no branch of its own.
  const read = (path: string, axis: number): void => {
    if (axis === AXES.length) {
      const cut = withoutEnd(path);
      for (const whole of cut === path ? [path] : [path, cut]) {
        for (const routed of routedAs(withoutDotSegments(whole))) paths.add(routed);
      }
      return;
    }
    read(path, axis + 1);
    const next = AXES[axis]!(path, memo);
    if (next !== path) read(next, axis + 1);
  };
  read(pathname, 0);
  // Cut where a server may end it before it is read, too: what the cut leaves at the end
  // (`/account%20` of `/account%20%0Ax`) is then trimmed, decoded and merged like any end.
  const cut = withoutEnd(pathname);
  if (cut !== pathname) read(cut, 0);
  const readings: PathReading[] = [];
  for (const path of paths) {
    if (path !== pathname) readings.push({ path, folded: false });
    readings.push({ path, folded: true });
  }
  return readings;
}

const ESCAPE = /%(?:u00([0-9a-f]{2})|([0-9a-f]{2}))/gi;
/** What servers decode in a path and what changes how it splits: unreserved characters, `/ \ ; %` and space. */
const DECODED = /^[A-Za-z0-9\-._~/\\;% ]$/;
/**
 * Other spellings of `.`, `/` and `\`: overlong UTF-8 that old IIS and Java decoders accepted,
 * and the fullwidth forms (U+FF0E, U+FF0F, U+FF3C) that NFKC normalization (Java, .NET,
 * Python's `unicodedata`) and IIS's best-fit mapping turn into them.
 */
const OVERLONG = /%c0%ae|%c0%af|%c1%9c|%e0%80%ae|%e0%80%af|%ef%bc%8e|%ef%bc%8f|%ef%bc%bc|%u(?:ff0e|ff0f|ff3c)/gi;
const OVERLONG_CHAR: Record<string, string> = {
  ae: ".",
  af: "/",
  "9c": "\\",
  "8e": ".",
  "8f": "/",
  bc: "\\",
  "0e": ".",
  "0f": "/",
  "3c": "\\",
};

/** `path` with its escapes of {@link DECODED} characters decoded, over and over (double encoding). */
function decoded(path: string): string {
  let out = path;
  for (let round = 0; round < DECODE_ROUNDS && out.includes("%"); round++) {
    const next = out
      .replace(OVERLONG, (escape) => OVERLONG_CHAR[escape.slice(-2).toLowerCase()]!)
      .replace(ESCAPE, (escape, wide: string | undefined, byte: string | undefined) => {
        const char = String.fromCharCode(parseInt(wide ?? byte!, 16));
        return DECODED.test(char) ? char : escape;
      });
    if (next === out) break;
    out = next;
  }
  return out;
}

/** IIS on Windows: `\` is `/`, and a name's trailing dots and spaces are dropped (`.. ` is `..`). */
function windowsPath(path: string): string {
  return path
    .replaceAll("\\", "/")
    .split("/")
    .map((segment) => {
      const spaced = withoutTrailing(segment, " ");
      return spaced === "." || spaced === ".." ? spaced : withoutTrailing(spaced, ". ") || segment;
    })
    .join("/");
}

/** `text` without the run of `chars` that ends it: a loop, where `/ +$/` backtracks over every run of spaces inside it. */
function withoutTrailing(text: string, chars: string): string {
  let end = text.length;
  while (end > 0 && chars.includes(text[end - 1]!)) end--;
  return text.slice(0, end);
}

/**
 * Whether a reading of `pathname` climbs above its root (`/..%2fadmin`, `/x/..;/..;/admin`,
 * `/%252e%252e/admin`): the WHATWG parser resolves plain `..` segments, but an origin that
 * decodes or drops `;` parameters first resolves these against its own path. Behind an
 * `origin.url` with a path prefix (`http://backend/app/`), `/app/..%2fadmin` is the backend's
 * `/admin`, outside what the deployment serves. Every axis only adds `..` segments or removes
 * the empty ones that would hold them back, so the reading with all of them climbs highest.
 *
 * @example
 * climbsAboveRoot("/..%2fadmin"); // true
 * climbsAboveRoot("/a/..%2fb"); // false
 */
export function climbsAboveRoot(pathname: string): boolean {
  if (!COSTLY.test(pathname)) return false;
  let depth = 0;
  for (const segment of mergedSlashes(withoutParameters(windowsPath(decoded(pathname))))
    .split("/")
    .slice(1)) {
    if (segment === "..") depth--;
    else if (segment !== ".") depth++;
    if (depth < 0) return true;
  }
  return false;
}

/** Tomcat, Jetty, Spring: each segment's `;` parameters dropped (`/a;x/..;/b` is `/a/../b`). */
function withoutParameters(path: string): string {
  return path
    .split("/")
    .map((segment) => {
      const semicolon = segment.indexOf(";");
      return semicolon === -1 ? segment : segment.slice(0, semicolon);
    })
    .join("/");
}

/**
 * An escape the Unicode reading decodes: a C0 control or space, a multi-byte UTF-8 character,
 * or IIS's `%uXXXX`. Overlong forms fail to decode and stay as they are ({@link OVERLONG}).
 */
const UNICODE_ESCAPE =
  /%[01][0-9a-f]|%20|%[cd][0-9a-f]%[89ab][0-9a-f]|%e[0-9a-f](?:%[89ab][0-9a-f]){2}|%f[0-4](?:%[89ab][0-9a-f]){3}|%u[0-9a-f]{4}/gi;
/** Whether a segment's ends are trimmed of `char`: Java's `String.trim` (every char up to space), .NET's and JavaScript's whitespace. */
function trimmed(char: string): boolean {
  return char <= " " || char === "\x85" || /\s/.test(char);
}
/**
 * The two letters Java's `equalsIgnoreCase` (and .NET's invariant culture) matches with an
 * ASCII one though neither case mapping of JavaScript's gives it: `ı` upper-cases to `I`, `İ`
 * lower-cases to `i` (NFKC already makes `ſ` `s` and the Kelvin sign `K`).
 */
const CASELESS_ASCII: Record<string, string> = { "\u0131": "i", "\u0130": "i" };
/** The characters the URL parser percent-encodes in a path, so a reading is spelled as patterns are. */
const PATH_ENCODED = /[^!-~]|["#<>?`{}]/gu;

/**
 * The path as a server that decodes it to Unicode reads it: NFKC normalized (Java's and
 * .NET's `Normalize`, IIS's best fit: `%EF%BD%81` is `a`), `ı` and `İ` matched as `i`, and
 * each segment trimmed of whitespace and controls at both ends (Spring's `trimTokens`, Java's
 * `String.trim`, .NET's `Trim`: `/api%09/x` and `/%20api/x` are `/api/x`), a segment left
 * empty dropped. A segment it changes is written back percent-encoded as the URL parser
 * writes it; one it leaves alone is kept as it came.
 */
function unicodeRead(path: string, memo: Map<string, string>): string {
  const out: string[] = [];
  for (const segment of path.split("/")) {
    const first = segment.charAt(0);
    if (first === "" || (!segment.includes("%") && !trimmed(first) && !trimmed(segment.charAt(segment.length - 1)))) {
      out.push(segment);
      continue;
    }
    let read = memo.get(segment);
    if (read === undefined) memo.set(segment, (read = unicodeSegment(segment)));
    // A segment of nothing but whitespace is no segment (Spring's tokenizer drops empty tokens).
    if (read !== "") out.push(read);
  }
  return out.join("/");
}

/** One segment read as {@link unicodeRead} does: itself if that changes nothing, else re-encoded. */
function unicodeSegment(segment: string): string {
  const plain = segment.includes("%") ? segment.replace(UNICODE_ESCAPE, decodedUnit) : segment;
  const read = plain.normalize("NFKC").replace(/[\u0130\u0131]/g, (c) => CASELESS_ASCII[c]!);
  let start = 0;
  let end = read.length;
  while (start < end && trimmed(read[start]!)) start++;
  while (end > start && trimmed(read[end - 1]!)) end--;
  const kept = read.slice(start, end);
  return kept === plain ? segment : kept.replace(PATH_ENCODED, encodeURIComponent);
}

function decodedUnit(escape: string): string {
  if (escape[1] === "u" || escape[1] === "U") return String.fromCharCode(parseInt(escape.slice(2), 16));
  try {
    return decodeURIComponent(escape);
  } catch {
    return escape;
  }
}

/** nginx's `merge_slashes` and Express's lenient routes: `//` is `/`, and a trailing `/` is dropped. */
function mergedSlashes(path: string): string {
  const merged = path.replace(/\/{2,}/g, "/");
  return merged.length > 1 && merged.endsWith("/") ? merged.slice(0, -1) : merged;
}

/** RFC 3986 §5.2.4: `.` and `..` segments resolved (never above the root). */
function withoutDotSegments(path: string): string {
  const out: string[] = [];
  const segments = path.split("/");
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    const last = i === segments.length - 1;
    if (segment === "..") out.pop();
    if (segment === "." || segment === "..") {
      if (last) out.push("");
      continue;
    }
    out.push(segment);
  }
  return `/${out.join("/")}`;
}
