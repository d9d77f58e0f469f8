/**
 * Where servers end a request path before its end, and what a framework routes of it: the
 * readings `pathReadings` (`path-readings.ts`) adds to each decoded, resolved one. Rails'
 * `.format`, OpenLiteSpeed's `%00`, `%23` and `%3F` decoded before the query and fragment are
 * split off, and a PHP front controller's path info each made an exact bypass route (`/account`)
 * miss a path the origin served as it: web cache deception on a `cacheAuthorized` deployment.
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
 * What a framework may route `path` as once it is resolved: itself, its PHP front controller's
 * path info, and either without its extension ({@link withoutFormat}).
 */
export function routedAs(path: string): string[] {
  const info = pathInfo(path);
  return info === path ? [path, withoutFormat(path)] : [path, withoutFormat(path), info, withoutFormat(info)];
}

/**
 * The path a PHP front controller routes: what follows the script in `/index.php/account` (the
 * CGI `PATH_INFO`, which Symfony, Laravel and CodeIgniter route as `/account`), the first
 * segment ending in `.php` being the script.
 */
function pathInfo(path: string): string {
  const script = /\.php(?=\/)/i.exec(path);
  return script ? path.slice(script.index + 4) : path;
}

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
