// An existing Worker that puts herdless in front of /blog/* (and its admin API on
// /__herdless/) and answers every other path itself.
import { handle, type Env } from "herdless/cloudflare";

// The Durable Objects herdless's handler talks to, bound in wrangler.jsonc.
export { KeyCoordinatorObject, OriginGuardObject, PurgeRegistryObject, StatsObject } from "herdless/cloudflare";

export default {
  async fetch(request, env, ctx) {
    const { pathname } = new URL(request.url);
    if (pathname.startsWith("/blog/") || pathname.startsWith("/__herdless/")) return handle(request, env, ctx);
    return new Response(`this Worker's own answer for ${pathname}\n`, {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  },
} satisfies ExportedHandler<Env>;
