export const ADMIN_PREFIX = "/__herdless/";
/** The name every admin path holds; a URL parser never adds it, so a target without it is not one. */
export const ADMIN_NAME = "__herdless";

/**
 * Whether a request is for the admin API rather than the cache: decided on the parsed URL's
 * path (dot segments resolved), on both runtimes, so no spelling of an admin path reaches the
 * origin and the cache under the admin's key. `/__herdless` is redirected to `/__herdless/`.
 *
 * @example
 * isAdminPath(new URL("https://a.example/x/../__herdless/stats").pathname); // true
 */
export function isAdminPath(pathname: string): boolean {
  const path = adminPath(pathname);
  return path.startsWith(ADMIN_PREFIX) || path === ADMIN_PREFIX.slice(0, -1);
}

/**
 * The path the admin API routes by: leading slashes merged, as nginx and most servers read a
 * path. `//__herdless/stats` was no admin path, so an operator's request for it went to the
 * origin with their admin token, and its answer was kept under that key.
 *
 * @example
 * adminPath("//__herdless/stats"); // "/__herdless/stats"
 */
export function adminPath(pathname: string): string {
  return pathname.startsWith("//") ? pathname.replace(/^\/+/, "/") : pathname;
}
