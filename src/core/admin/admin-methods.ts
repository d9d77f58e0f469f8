import { ADMIN_PREFIX } from "./admin-path.ts";
import { json, type AdminRequest, type AdminResponse } from "./responses.ts";

const READ = ["GET", "HEAD"] as const;
const WRITE = ["POST"] as const;

/** The methods an admin path answers; undefined for a path that is no admin route. */
function allowedMethods(path: string, metrics: boolean): readonly string[] | undefined {
  if (path === ADMIN_PREFIX || path === `${ADMIN_PREFIX}stats`) return READ;
  if (path === `${ADMIN_PREFIX}metrics`) return metrics ? READ : undefined;
  if (path === `${ADMIN_PREFIX}purge` || path === `${ADMIN_PREFIX}login`) return WRITE;
  return undefined;
}

/** `405` naming the methods `path` answers, in `Allow` as RFC 9110 §15.5.6 asks. */
export function methodNotAllowed(method: string, path: string, allowed: readonly string[]): AdminResponse {
  return json(405, { error: `${path} answers ${allowed.join(" and ")}, not ${method}` }, [
    ["allow", allowed.join(", ")],
  ]);
}

/**
 * What the request's method alone decides, before the token is looked at: a `HEAD` on a
 * route read with `GET` is that `GET` without its body (a monitor's check, RFC 9110 §9.3.2);
 * any other method a route does not answer is `405` with `Allow`, not a `404` that says the
 * route does not exist (nor a token check that feeds the wrong-token brake).
 * Undefined: the route answers the method itself.
 */
export async function answerByMethod(
  request: AdminRequest,
  metrics: boolean,
  asGet: (request: AdminRequest) => Promise<AdminResponse>,
): Promise<AdminResponse | undefined> {
  const allowed = allowedMethods(request.path, metrics);
  if (!allowed || allowed.includes(request.method)) {
    if (request.method !== "HEAD" || !allowed) return undefined;
    return { ...(await asGet({ ...request, method: "GET" })), body: "" };
  }
  return methodNotAllowed(request.method, request.path, allowed);
}
