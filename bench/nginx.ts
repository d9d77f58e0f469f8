/**
 * nginx as an optional peer in the spike: a caching reverse proxy in front of the same
 * origin, with the settings that give it herdless's promises as far as it has them
 * (`proxy_cache_lock` collapses a cold key's misses into one origin request; stale copies
 * while one request updates). Runs only when `nginx` is on PATH (Debian: `apt-get install
 * nginx-light`); the bench works without it.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../fixtures/free-port.ts";
import { startServer, type Server } from "./processes.ts";

export function nginxPath(): string | undefined {
  const out = spawnSync("sh", ["-c", "command -v nginx || ls /usr/sbin/nginx"], { encoding: "utf8" });
  const path = out.stdout.trim().split("\n")[0];
  return out.status === 0 && path ? path : undefined;
}

function config(dir: string, port: number, originUrl: string): string {
  const origin = new URL(originUrl);
  // One worker process: herdless's Node server is one serving thread.
  return `
${process.getuid?.() === 0 ? "user root;" : ""}
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=bench:10m max_size=256m inactive=10m use_temp_path=off;
  upstream origin { server ${origin.hostname}:${origin.port}; keepalive 16; }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 1000000;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_cache bench;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 30s;
      proxy_cache_lock_age 30s;
      proxy_cache_use_stale updating error timeout http_500 http_502 http_503 http_504;
      proxy_cache_background_update on;
      proxy_cache_revalidate on;
      add_header Cache-Status "nginx; $upstream_cache_status" always;
    }
  }
}
`;
}

/** Starts nginx on a free port in front of `originUrl`; resolves once it answers. */
export async function startNginx(originUrl: string, scratch: string): Promise<{ server: Server; url: string }> {
  const nginx = nginxPath();
  if (nginx === undefined) throw new Error("nginx is not on PATH");
  const dir = join(scratch, "nginx");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const file = join(dir, "nginx.conf");
  writeFileSync(file, config(dir, port, originUrl));
  // nginx prints nothing once it serves: `-t` checks the config (and says so), then it runs.
  const server = await startServer({
    name: "nginx",
    command: "sh",
    args: [
      "-c",
      `"${nginx}" -t -q -c "${file}" -p "${dir}" && echo "nginx config ok" && exec "${nginx}" -c "${file}" -p "${dir}"`,
    ],
    readyPattern: /(nginx config ok)/,
  });
  return { server, url: await answering(server, `http://127.0.0.1:${port}`) };
}

/**
 * Resolves with `url` once a peer's server answers there (any status: the probe goes through
 * it to the origin), or stops the server and throws after 5 s.
 */
export async function answering(server: Server, url: string): Promise<string> {
  for (let i = 0; ; i++) {
    try {
      await fetch(`${url}/__peer-ready`, { method: "HEAD" });
      return url;
    } catch (error) {
      if (i >= 100) {
        await server.stop();
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
