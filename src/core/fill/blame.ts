import { routeFor, type Config } from "../config.ts";
import type { Entry } from "../http/entry.ts";
import { lifetimes } from "../http/freshness.ts";
import { headerList } from "../http/http.ts";
import type { OriginResponse } from "../origin/origin-client.ts";
import type { FillRequest } from "./coordinator.ts";
import type { Store } from "../store/store.ts";
import type { ErrorOver } from "../http/request-blame.ts";

/**
 * Whether an error to this fill may be blamed on its request's own input rather than stored
 * (blamesTheRequest's `over`). When the URL has a stored response: this variant's, or
 * any other's (the Vary pointer under the primary key; an error without `Vary` is stored in
 * the pointer's place and served to every variant, so an attacker's `X-Lang: zz` made the
 * origin's 404 every language's page). And when the error would be fresh for no time at all
 * (no explicit freshness, no heuristic): stored, it served only the requests collapsed onto
 * this fill, every visitor arriving while the attacker's 404 was on its way. What it would
 * be stored over: a copy (`copy`), nothing that lasts (`fleeting`), or neither (undefined).
 */
export async function errorBlameable(
  ctx: { config: Config; store: Store },
  request: FillRequest,
  stored: Entry | undefined,
  res: OriginResponse,
): Promise<ErrorOver> {
  if (res.status < 400) return undefined;
  if (stored !== undefined) return "copy";
  const { status, requestAt, responseAt } = res;
  const info = { status, headers: headerList(res.headers), requestAt, responseAt };
  if (request.key !== request.primary && (await ctx.store.get(request.primary)) !== undefined) return "copy";
  return lifetimes(info, routeFor(ctx.config, request.path), ctx.config).staleAt <= responseAt ? "fleeting" : undefined;
}
