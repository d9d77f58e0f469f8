/**
 * Varnish as an optional peer, beside nginx: a caching reverse proxy in front of the same
 * origin with the settings that give it herdless's promises as far as it has them. Varnish
 * collapses a key's misses on its own (the waiting list: one backend fetch, the others wait)
 * and serves a stale copy while one fetch refreshes it (`grace`, here an hour, and kept when
 * that fetch fails); `keep` lets it revalidate with the origin's validators. Runs only when `varnishd` is on PATH (Debian: `apt-get
 * install varnish`); the bench works without it.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../fixtures/free-port.ts";
import { answering } from "./nginx.ts";
import { startServer, type Server } from "./processes.ts";

export function varnishPath(): string | undefined {
  const out = spawnSync("sh", ["-c", "command -v varnishd || ls /usr/sbin/varnishd"], { encoding: "utf8" });
  const path = out.stdout.trim().split("\n")[0];
  return out.status === 0 && path ? path : undefined;
}

function vcl(originUrl: string): string {
  const origin = new URL(originUrl);
  // As nginx's peer config has it (proxy_cache_use_stale updating error … http_503): a stale
  // copy for an hour while one fetch refreshes it, and kept when that fetch gets a 5xx
  // (Varnish's usual recipe: a background fetch's 5xx is abandoned, the stale copy stays).
  return `vcl 4.1;
backend origin { .host = "${origin.hostname}"; .port = "${origin.port}"; .first_byte_timeout = 30s; }
sub vcl_backend_response {
  set beresp.grace = 1h;
  set beresp.keep = 1h;
  if (beresp.status >= 500 && bereq.is_bgfetch) { return (abandon); }
}
sub vcl_deliver {
  if (obj.hits > 0) { set resp.http.Cache-Status = "varnish; hit"; }
  else { set resp.http.Cache-Status = "varnish; fwd=miss"; }
}
`;
}

/** Starts varnishd on a free port in front of `originUrl`; resolves once it answers. */
export async function startVarnish(originUrl: string, scratch: string): Promise<{ server: Server; url: string }> {
  const varnishd = varnishPath();
  if (varnishd === undefined) throw new Error("varnishd is not on PATH");
  const dir = join(scratch, "varnish");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const file = join(dir, "bench.vcl");
  writeFileSync(file, vcl(originUrl));
  // In the foreground (-F), its own working directory (-n), no privilege jail (-j none: the
  // bench may run as root, which varnishd would otherwise switch away from).
  const server = await startServer({
    name: "varnish",
    command: varnishd,
    args: ["-F", "-j", "none", "-n", join(dir, "work"), "-a", `127.0.0.1:${port}`, "-f", file, "-s", "malloc,256m"],
    readyPattern: /(Child starts)/,
  });
  return { server, url: await answering(server, `http://127.0.0.1:${port}`) };
}
