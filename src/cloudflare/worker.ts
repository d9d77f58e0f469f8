import type { Env } from "./env.ts";

export { KeyCoordinator } from "./key-coordinator.ts";
export { OriginGuardObject } from "./origin-guard-object.ts";

/**
 * The herdless Worker. Until the engine is wired in, it is a plain reverse proxy to
 * ORIGIN_URL, so the toolchain (`npm start`, workers tests, deploy) has something real to run.
 */
export default {
  async fetch(request, env, _ctx): Promise<Response> {
    const incoming = new URL(request.url);
    const target = new URL(env.ORIGIN_URL);
    // ORIGIN_URL may carry a path prefix (the test origin namespaces by path).
    target.pathname = `${target.pathname.replace(/\/$/, "")}${incoming.pathname}`;
    target.search = incoming.search;
    try {
      return await fetch(new Request(target, request));
    } catch {
      return new Response("origin unreachable\n", { status: 502, headers: { "content-type": "text/plain" } });
    }
  },
} satisfies ExportedHandler<Env>;
