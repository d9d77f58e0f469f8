/**
 * Where servers end a request path before its end, and what a framework routes of it: the
 * readings `pathReadings` (`path-readings.ts`) adds to each decoded, resolved one. Rails'
 * `.format`, OpenLiteSpeed's `%00`, `%23` and `%3F` decoded before the query and fragment are
 * split off, a PHP front controller's path info and ASP.NET's cookieless segments each let a
 * path the origin served as `/account` past an exact `/account` bypass route: web cache
 * deception on a `cacheAuthorized` deployment.
 */

/**
 * An escape a server may take for the end of the path: `%00` (OpenLiteSpeed, C string
 * handling), `%23` and `%3F` decoded before the path is split from its fragment and query, and
 * `%0A` or `%0D` (an nginx `rewrite` whose `(.*)` stops at a newline). The escapes the other
 * readings leave or write are uppercase or lowercase as sent.
 */
const PATH_END = /%(?:00|23|3f|0a|0d)/i;

/** `path` up to the first escape a server may read as its end ({@link PATH_END}). */
export function withoutEnd(path: string): string {
  const end = path.search(PATH_END);
  return end === -1 ? path : path.slice(0, end);
}

/**
 * What a framework may route `path` as once it is resolved: itself and without a trailing `/`
 * (Express's lenient routes; a cut or a resolved `..` leaves one), each as it stands and as the
 * path a framework reads in it ({@link pathInfo}), each with and without its extension
 * ({@link withoutFormat}).
 */
export function routedAs(path: string): string[] {
  // A loop, where `/\/+$/` rescans every run of slashes inside the path from each of its slashes.
  let end = path.length;
  while (end > 1 && path[end - 1] === "/") end--;
  const trimmed = path.slice(0, end);
  const routed: string[] = [];
  for (const whole of trimmed === path ? [path] : [path, trimmed]) {
    const info = pathInfo(whole);
    for (const read of info === whole ? [whole] : [whole, info]) routed.push(read, withoutFormat(read));
  }
  return routed;
}

/**
 * The path a framework routes: without ASP.NET's cookieless-session segments (`/(S(x))/account`
 * is `/account` to ASP.NET on .NET Framework, wherever the segment stands), and after a PHP
 * front controller's script (what follows `/index.php` in `/index.php/account`: the CGI
 * `PATH_INFO`, which Symfony, Laravel and CodeIgniter route as `/account`), the first segment
 * ending in `.php` being the script.
 */
function pathInfo(path: string): string {
  const routed = COOKIELESS.test(path) ? path.replace(COOKIELESS_SEGMENTS, "") || "/" : path;
  const script = /\.php(?=\/)/i.exec(routed);
  return script ? routed.slice(script.index + 4) : routed;
}

/** An ASP.NET cookieless segment: a letter and a value in parentheses, `(S(…))`, `(A(…))`, `(F(…))`. */
const COOKIELESS = /\/\([A-Za-z]\([^/()]*\)\)(?=\/|$)/;
const COOKIELESS_SEGMENTS = new RegExp(COOKIELESS.source, "g");

/**
 * `path` without the extension of its last segment: Rails routes `/account.css` to `/account`
 * with the format `css`, and Spring MVC before 5.3 (suffix pattern matching) to the handler of
 * `/account`. A segment that starts with its dot (`/.env`) has no extension.
 */
function withoutFormat(path: string): string {
  const slash = path.lastIndexOf("/");
  const dot = path.indexOf(".", slash + 2);
  return dot === -1 ? path : path.slice(0, dot);
}
