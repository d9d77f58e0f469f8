/**
 * herdless's own work per fresh hit, alone: its built node:http handler (`createHandler`, as
 * the CLI's server calls it) answering a fresh hit millions of times in a loop, with a request
 * and a response that do nothing (no parser, no socket, no kernel), in nanoseconds per call.
 * What the hit-path ladder (hit-ladder.ts) cannot resolve under the machine's noise, a few
 * tens of nanoseconds, this sees; what it leaves out (Node's own work per request, caches
 * shared with it) the ladder measures.
 *
 *   flock /work/bench.lock node --import tsx bench/hit-own.ts [--base DIST] [--processes 4] [--calls 2000000]
 *
 * Builds the package as the bench does (node-build.ts) and measures it in `--processes`
 * fresh processes; with `--base`, another build's output folder (a change's before: `git
 * archive` the old tree, `tsc -p tsconfig.build.json --outDir DIST`) is measured in as many,
 * alternated with this one's. Each process fills one page from a local origin through a real
 * server, then times batches of `--calls` handler calls and reports its fastest batch after
 * the first (the code is optimized by then), less the same loop's with a listener that only
 * writes the answer.
 */
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { builtCli } from "./node-build.ts";
import { ROOT } from "./processes.ts";

interface Built {
  createHandler: typeof import("../src/node/handler.ts").createHandler;
  parseConfig: typeof import("../src/core/config.ts").parseConfig;
}

async function child(dist: string, calls: number): Promise<void> {
  const { createServer, get } = await import("node:http");
  const handlerModule = (await import(join(dist, "node/handler.js"))) as Pick<Built, "createHandler">;
  const configModule = (await import(join(dist, "core/config.js"))) as Pick<Built, "parseConfig">;
  const body = Buffer.alloc(1024, 97);
  const origin = createServer((_req, res) => {
    res.writeHead(200, { "cache-control": "max-age=3600", "content-type": "text/plain" });
    res.end(body);
  });
  const listen = (server: import("node:http").Server) =>
    new Promise<number>((resolve) =>
      server.listen(0, "127.0.0.1", () => resolve((server.address() as import("node:net").AddressInfo).port)),
    );
  const config = configModule.parseConfig({
    origin: { url: `http://127.0.0.1:${await listen(origin)}` },
    log: { level: "error" },
  });
  const handler = handlerModule.createHandler({ config });
  const server = createServer(handler);
  const port = await listen(server);
  const path = "/hit/one?bytes=1024";
  const host = "bench.herdless.test";
  await new Promise<void>((resolve, reject) =>
    get({ port, path, headers: { host } }, (res) => {
      res.resume();
      res.on("end", resolve);
    }).on("error", reject),
  );
  // One shape each for every call, as Node's own request and response objects have; the
  // target and the Host are new strings each time, as the parser's are (their hashes are not known).
  const pathBytes = Buffer.from(path, "latin1");
  const hostBytes = Buffer.from(host, "latin1");
  class Request {
    method = "GET";
    // HTTP/1.1, as the bench's clients speak (the handler answers 505 to a request without a version).
    httpVersionMajor = 1;
    httpVersionMinor = 1;
    url = pathBytes.toString("latin1");
    rawHeaders = ["Host", hostBytes.toString("latin1")];
    socket = {};
  }
  let written = 0;
  class Response {
    statusCode = 200;
    writeHead(_status: number, headers: string[]): this {
      written += headers.length;
      return this;
    }
    end(chunk?: Buffer): void {
      written += chunk ? 1 : 0;
    }
  }
  const call = handler as unknown as (req: Request, res: Response) => void;
  // The same loop with a listener that only writes (the request's strings, the two objects,
  // the calls): taken away from the handler's. Two loops, so that neither call site sees both.
  const writeOnly = (_req: Request, res: Response) => {
    res.writeHead(200, []);
    res.end(body);
  };
  const handlerBatches: number[] = [];
  const loopBatches: number[] = [];
  for (let batch = 0; batch < 6; batch++) {
    let start = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) call(new Request(), new Response());
    handlerBatches.push(Number(process.hrtime.bigint() - start) / calls);
    start = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) writeOnly(new Request(), new Response());
    loopBatches.push(Number(process.hrtime.bigint() - start) / calls);
  }
  // The fastest batch after the first: the code is optimized by then.
  const nsPerCall = Math.min(...handlerBatches.slice(1));
  const loop = Math.min(...loopBatches.slice(1));
  const hits = handler.stack.metrics.served.hit;
  if (hits !== calls * 6) throw new Error(`expected ${calls * 6} hits, counted ${hits} (${written} writes)`);
  console.log(JSON.stringify({ nsPerHit: nsPerCall - loop, nsPerCall, loop }));
  server.close();
  origin.close();
  await handler.close();
}

function measure(dist: string, calls: number): number {
  const out = spawnSync(
    process.execPath,
    ["--import", "tsx", join(ROOT, "bench/hit-own.ts"), "--child", dist, "--calls", String(calls)],
    { cwd: ROOT, encoding: "utf8", timeout: 300_000 },
  );
  if (out.status !== 0) throw new Error(`hit-own child failed:\n${out.stdout}${out.stderr}`);
  return (JSON.parse(out.stdout.trim().split("\n").at(-1)!) as { nsPerHit: number }).nsPerHit;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const option = (name: string) => {
    const at = argv.indexOf(name);
    return at === -1 ? undefined : argv[at + 1];
  };
  const calls = Number(option("--calls") ?? 2_000_000);
  const childDist = option("--child");
  if (childDist !== undefined) return child(childDist, calls);
  const processes = Number(option("--processes") ?? 4);
  const base = option("--base");
  const dist = dirname(dirname(builtCli()));
  const sides: Array<[string, string]> =
    base === undefined
      ? [["this", dist]]
      : [
          ["base", base],
          ["this", dist],
        ];
  const results = new Map<string, number[]>(sides.map(([name]) => [name, []]));
  for (let i = 0; i < processes; i++)
    for (const [name, folder] of i % 2 === 0 ? sides : [...sides].reverse()) {
      const ns = measure(folder, calls);
      results.get(name)!.push(ns);
      console.log(`${name} process ${i + 1}: ${ns.toFixed(1)} ns per hit`);
    }
  for (const [name, values] of results) {
    const sorted = [...values].sort((a, b) => a - b);
    console.log(
      `${name}: median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)} ns per hit (${sorted.map((v) => v.toFixed(1)).join(", ")})`,
    );
  }
}

await main();
