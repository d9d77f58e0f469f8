/* Throwaway fuzzer: generated requests via raw sockets to Node herdless in front of a generated-response origin. */
import { createServer, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { herdless } from "../test/node/attack-kit.ts";
import { deploy } from "../test/node/deployment.ts";

let seed = Number(process.env.SEED ?? 1);
const rand = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const chance = (p: number) => rand() < p;

const findings: string[] = [];
const flag = (kind: string, detail: string) => {
  findings.push(`${kind}: ${detail}`);
  console.log(`FLAG ${kind}: ${detail}`);
};
process.on("uncaughtException", (e) => flag("uncaught", String(e?.stack ?? e)));
process.on("unhandledRejection", (e) => flag("unhandledRejection", String((e as Error)?.stack ?? e)));

interface OriginLog {
  n: number;
  url: string;
  fuzzId: string;
  reqHeaders: Record<string, string | string[] | undefined>;
  status: number;
  headers: [string, string][];
  body: string;
  kind: string;
  sent5xx: boolean;
}
const originLog: OriginLog[] = [];

const CC = [
  "max-age=60",
  "max-age=60",
  "public, max-age=60",
  "max-age=2147483648",
  "max-age=9223372036854775808",
  "max-age=99999999999999999999999",
  "max-age=-1",
  "max-age=abc",
  "max-age=\"60\"",
  "max-age=60, max-age=0",
  "s-maxage=60, private",
  "private",
  "private=\"set-cookie\", max-age=60",
  "no-cache=\"set-cookie\", max-age=60",
  "no-store",
  "no-cache",
  "must-revalidate, max-age=1",
  "max-age=1, stale-while-revalidate=99999999999999, stale-if-error=-5",
  ",,,,",
  "max-age",
  "max-age=",
  "=,=",
  "max-age=60;x=y",
  "public, s-maxage=9223372036854775807",
  "immutable",
  "max-age=0x10",
  "max-age=1e3",
  "x".repeat(5000),
];
const AGE = ["-5", "abc", "99999999999999999999", "1.5", "", "10, 20", "9223372036854775808", "0"];
const DATES = [
  "Thu, 01 Jan 1970 00:00:00 GMT",
  "Fri, 31 Dec 9999 23:59:59 GMT",
  "garbage",
  "",
  "0",
  "-1",
  "Sun, 06 Nov 1994 08:49:37 GMT",
  "Sunday, 06-Nov-94 08:49:37 GMT",
  "Sun Nov  6 08:49:37 1994",
  "Wed, 01 Jan 2300 00:00:00 GMT",
  "Mon, 32 Foo 2024 99:99:99 GMT",
];
const VARY = [
  "*",
  "x-v",
  "x-v, x-v",
  "accept-encoding",
  "X-V, Accept-Language",
  "",
  ",",
  "x-v, *",
  Array.from({ length: 100 }, (_, i) => `x-h${i}`).join(", "),
  "authorization",
  "cookie",
  "range",
  "x-fuzz-id",
  "host",
];
const ETAG = ['"v1"', "v1", 'W/"v1"', 'w/"v1"', '"' + "e".repeat(8000) + '"', '"', '""', '"a", "b"', "*"];

function originResponse(url: string, reqHeaders: Record<string, string | string[] | undefined>, n: number): {
  raw: string | Buffer;
  log: Omit<OriginLog, "n" | "url" | "fuzzId" | "reqHeaders">;
} {
  let status = chance(0.75) ? 200 : pick([203, 204, 301, 304, 404, 410, 500, 503, 0, 999, 600, 100, 101, 199, 299, 206]);
  // conditional request with If-None-Match sometimes gets a 304
  if (reqHeaders["if-none-match"] && chance(0.5)) status = 304;
  const headers: [string, string][] = [];
  const add = (k: string, v: string) => headers.push([k, v]);
  if (chance(0.9)) add("cache-control", pick(CC));
  if (chance(0.1)) add("cache-control", pick(CC));
  if (chance(0.1)) add("age", pick(AGE));
  if (chance(0.1)) add("expires", pick(DATES));
  if (chance(0.1)) add("date", pick(DATES));
  if (chance(0.25)) add("vary", pick(VARY));
  if (chance(0.05)) add("vary", pick(VARY));
  if (chance(0.3)) add("etag", pick(ETAG));
  if (chance(0.15)) add("last-modified", pick(DATES));
  if (chance(0.08)) add("set-cookie", `s=${n}`);
  if (chance(0.05)) add("location", pick(["/a%0d%0aSet-Cookie:x", "http://evil.test/", "//evil.test", "/ok"]));
  if (chance(0.03)) add("x-big", "b".repeat(pick([8000, 20000, 100000])));
  if (chance(0.05)) add("content-location", pick(["/other", "http://evil.test/x"]));
  const vals = ["x-v", "accept-language", "accept-encoding", "authorization", "cookie"]
    .map((h) => `${h}=${JSON.stringify(reqHeaders[h] ?? null)}`)
    .join(" ");
  let body = `#${n} ${url} ${vals}`;
  let bodyBytes: Buffer = Buffer.from(body);
  let kind = "cl";
  if (String(reqHeaders["accept-encoding"] ?? "").includes("gzip") && chance(0.1)) {
    add("content-encoding", "gzip");
    bodyBytes = gzipSync(Buffer.from(body));
    if (chance(0.3)) bodyBytes = gzipSync(Buffer.alloc(50_000_000));
    body = "<gzip>";
  }
  const reason = chance(0.9) ? "OK" : pick(["", "\x80\xff", "O\tK", "a".repeat(5000), "OK\x01"]);
  const framing = chance(0.8)
    ? "cl"
    : pick(["short", "long", "dupcl", "dupclsame", "te+cl", "none", "chunked", "badchunk", "truncchunk", "midheader", "interim"]);
  kind = framing;
  let head = `HTTP/1.1 ${status} ${reason}\r\n` + headers.map(([k, v]) => `${k}: ${v}\r\n`).join("");
  let tail: Buffer;
  switch (framing) {
    case "cl":
      head += `content-length: ${bodyBytes.length}\r\n`;
      tail = bodyBytes;
      break;
    case "short":
      head += `content-length: ${bodyBytes.length - 3}\r\n`;
      tail = bodyBytes;
      break;
    case "long":
      head += `content-length: ${bodyBytes.length + 10}\r\n`;
      tail = bodyBytes;
      break;
    case "dupcl":
      head += `content-length: ${bodyBytes.length}\r\ncontent-length: ${bodyBytes.length + 1}\r\n`;
      tail = bodyBytes;
      break;
    case "dupclsame":
      head += `content-length: ${bodyBytes.length}\r\ncontent-length: ${bodyBytes.length}\r\n`;
      tail = bodyBytes;
      break;
    case "te+cl":
      head += `content-length: 3\r\ntransfer-encoding: chunked\r\n`;
      tail = Buffer.concat([Buffer.from(bodyBytes.length.toString(16) + "\r\n"), bodyBytes, Buffer.from("\r\n0\r\n\r\n")]);
      break;
    case "none":
      tail = bodyBytes;
      break;
    case "chunked":
      head += `transfer-encoding: chunked\r\n`;
      tail = Buffer.concat([Buffer.from(bodyBytes.length.toString(16) + "\r\n"), bodyBytes, Buffer.from("\r\n0\r\n\r\n")]);
      break;
    case "badchunk":
      head += `transfer-encoding: chunked\r\n`;
      tail = Buffer.concat([Buffer.from("zz\r\n"), bodyBytes]);
      break;
    case "truncchunk":
      head += `transfer-encoding: chunked\r\n`;
      tail = Buffer.concat([Buffer.from((bodyBytes.length + 50).toString(16) + "\r\n"), bodyBytes]);
      break;
    case "midheader":
      return { raw: head.slice(0, Math.floor(head.length / 2)), log: { status: -1, headers, body, kind, sent5xx: false } };
    case "interim":
      head = `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n` + head + `content-length: ${bodyBytes.length}\r\n`;
      tail = bodyBytes;
      break;
    default:
      throw new Error(framing);
  }
  head += "connection: close\r\n\r\n";
  return {
    raw: Buffer.concat([Buffer.from(head, "latin1"), tail]),
    log: { status, headers, body, kind, sent5xx: status >= 500 && status < 600 },
  };
}

async function startOrigin(): Promise<{ url: string; server: Server }> {
  const server = createServer({ maxHeaderSize: 1_000_000 }, (req, res) => {
    req.resume();
    req.on("end", () => {
      const n = originLog.length;
      const url = req.url ?? "";
      const { raw, log } = originResponse(url, req.headers, n);
      originLog.push({ n, url, fuzzId: String(req.headers["x-fuzz-id"] ?? ""), reqHeaders: req.headers, ...log });
      req.socket.end(raw);
      void res;
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

interface Answer {
  status: number;
  headers: [string, string][];
  body: Buffer;
  text: string;
}
function rawReq(base: string, bytes: Buffer | string, timeoutMs = 8000): Promise<Answer | "timeout" | "error"> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = connect(Number(port), hostname, () => socket.write(bytes));
    const t = setTimeout(() => {
      socket.destroy();
      resolve("timeout");
    }, timeoutMs);
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("end", () => {
      clearTimeout(t);
      resolve(parse(Buffer.concat(chunks)));
    });
    socket.on("error", () => {
      clearTimeout(t);
      resolve(chunks.length ? parse(Buffer.concat(chunks)) : "error");
    });
  });
}
function parse(buf: Buffer): Answer {
  const text = buf.toString("latin1");
  const split = text.indexOf("\r\n\r\n");
  const [statusLine = "", ...lines] = text.slice(0, split === -1 ? text.length : split).split("\r\n");
  const headers: [string, string][] = lines.map((l) => {
    const c = l.indexOf(":");
    return [l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim()];
  });
  let body = split === -1 ? Buffer.alloc(0) : buf.subarray(split + 4);
  if (headers.some(([k, v]) => k === "transfer-encoding" && v === "chunked")) {
    const out: Buffer[] = [];
    let rest = body;
    for (;;) {
      const eol = rest.indexOf("\r\n");
      const size = parseInt(rest.subarray(0, eol).toString(), 16);
      if (!(size > 0)) break;
      out.push(rest.subarray(eol + 2, eol + 2 + size));
      rest = rest.subarray(eol + 4 + size);
    }
    body = Buffer.concat(out);
  }
  return { status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0), headers, body, text };
}
const h = (a: Answer, name: string) => a.headers.filter(([k]) => k === name).map(([, v]) => v);

const METHODS = ["GET", "GET", "GET", "GET", "HEAD", "get", "head", "OPTIONS", "TRACE", "PATCH", "POST", "PUT", "DELETE", "FOO", "M-SEARCH", "PURGE", "G\x01T"];
const PATHS = 12;
function target(k: number): string {
  const base = `/k${k}`;
  const r = rand();
  if (r < 0.6) return base + (chance(0.2) ? `?q=${Math.floor(rand() * 3)}` : "");
  return pick([
    `http://shop.test${base}`,
    `HTTP://SHOP.TEST${base}`,
    `http://shop.test:80${base}`,
    `https://shop.test${base}`,
    `shop.test:80`,
    `${base}/%00`,
    `${base}%zz`,
    `${base}?a=%zz&b=%`,
    `${base}/%c0%af`,
    `${base}/%ff%fe`,
    `${base}/${"a".repeat(pick([2000, 8000, 15000]))}`,
    `${base}?${"x=1&".repeat(500)}`,
    `${base}/..%2f..%2fetc`,
    `${base}/\u00e9`,
    `${base}#frag`,
    `${base}?utm_source=x`,
    `${base}/./`,
    `*`,
    `${base}%`,
    `${base}?%00=1`,
  ]);
}
const RANGES = ["bytes=-0", "bytes=0-0", "bytes=0-1,2-3", "bytes=99999999999999999999-", "bytes=-99999999999999999999", "bytes=5-2", "bytes=", "bytes=0-", "items=0-1", "bytes=-1", "bytes = 0-1", "bytes=0-18446744073709551616"];
const INM = ["*", '"v1"', 'W/"v1"', '"a", "v1"', "garbage", "", '"v1", *', 'W/"' + "e".repeat(3000) + '"'];
const IMS = DATES;
const RCC = ["no-cache", "max-age=0", "only-if-cached", "max-stale", "max-stale=abc", "min-fresh=99999999999999999999", "no-store", ",,=", "max-age=-1", "no-transform", "x".repeat(3000)];
const AE = ["gzip", "br", "gzip;q=0", "*", "identity;q=0", "*;q=0", "GZIP, BR", "gzip;q=abc", "", " , ", "x".repeat(2000), "gzip, gzip, br;q=1.0001", "deflate"];

function request(id: string): { bytes: string; method: string; k: number; hdr: Map<string, string[]> } {
  const k = Math.floor(rand() * PATHS);
  const method = pick(METHODS);
  const t = target(k);
  const hdr = new Map<string, string[]>();
  const add = (n: string, v: string) => hdr.set(n, [...(hdr.get(n) ?? []), v]);
  add("host", "shop.test");
  add("connection", "close");
  add("x-fuzz-id", id);
  if (chance(0.5)) add("x-v", pick(["a", "b", ""]));
  if (chance(0.1)) add("x-v", pick(["a", "b"]));
  if (chance(0.2)) add("accept-language", pick(["en", "fr", "EN", ""]));
  if (chance(0.3)) add("accept-encoding", pick(AE));
  if (chance(0.05)) add("accept-encoding", pick(AE));
  if (chance(0.1)) add("authorization", `Bearer ${id}`);
  if (chance(0.1)) add("cookie", `c=${id}`);
  if (chance(0.15)) add("range", pick(RANGES));
  if (chance(0.1)) add("if-none-match", pick(INM));
  if (chance(0.1)) add("if-modified-since", pick(IMS));
  if (chance(0.05)) add("if-match", pick(INM));
  if (chance(0.05)) add("if-unmodified-since", pick(IMS));
  if (chance(0.05)) add("if-range", pick([...INM, ...IMS]));
  if (chance(0.1)) add("cache-control", pick(RCC));
  if (chance(0.03)) add("pragma", "no-cache");
  if (chance(0.05)) add("x-empty", "");
  if (chance(0.03)) for (let i = 0; i < pick([50, 99, 150, 500]); i++) add(`x-m${i}`, "1");
  let body = "";
  if (["POST", "PUT", "PATCH"].includes(method) || chance(0.08)) {
    body = "payload";
    if (chance(0.3)) {
      add("transfer-encoding", "chunked");
      body = "7\r\npayload\r\n0\r\n\r\n";
    } else add("content-length", String(body.length));
  }
  if (chance(0.05)) add("expect", "100-continue");
  if (chance(0.03)) add("content-type", pick(["application/json", "multipart/form-data; boundary=x", ""]));
  let bytes = `${method} ${t} HTTP/1.1\r\n`;
  for (const [n, vs] of hdr) for (const v of vs) bytes += `${n}: ${v}\r\n`;
  return { bytes: bytes + "\r\n" + body, method, k, hdr };
}

function norm(v: string[] | undefined): string | null {
  return v === undefined ? null : v.join(", ");
}

async function main() {
  const origin = await startOrigin();
  const fleet = process.env.FLEET ? await deploy("fleet", origin.url, { defaults: { staleIfErrorMs: 60_000 } }) : undefined;
  const single = fleet ? undefined : await herdless(origin.url, { defaults: { staleIfErrorMs: 60_000 } });
  const cache = {
    get base() {
      return fleet ? pick(fleet.urls) : single!.base;
    },
    clock: (fleet?.clock ?? single!.clock),
    close: () => (fleet ? fleet.close() : single!.close()),
  };
  const rounds = Number(process.env.ROUNDS ?? 200);
  const statusCount = new Map<string, number>();
  const groups = new Map<string, string>();
  let id = 0;
  for (let round = 0; round < rounds; round++) {
    const batch = Array.from({ length: pick([1, 1, 2, 4]) }, () => request(`c${id++}`));
    const answers = await Promise.all(batch.map((r) => rawReq(cache.base, Buffer.from(r.bytes, "latin1"))));
    if (chance(0.2)) cache.clock.advance(pick([1000, 30_000, 61_000, 3_600_000]));
    for (let i = 0; i < batch.length; i++) {
      const req = batch[i]!;
      const a = answers[i]!;
      const fid = req.hdr.get("x-fuzz-id")![0]!;
      if (a === "timeout" || a === "error") {
        flag(a, `${req.bytes.slice(0, 300).replace(/\r\n/g, "|")} origin=${JSON.stringify(originLog.filter((o) => o.fuzzId === fid).map((o) => [o.status, o.kind, o.headers.map((x) => x.join(":").slice(0, 80))]))}`);
        continue;
      }
      const cs = h(a, "cache-status").join(", ");
      const detail = /detail=([\w-]+)/.exec(cs)?.[1] ?? "";
      statusCount.set(`${a.status} ${detail}`, (statusCount.get(`${a.status} ${detail}`) ?? 0) + 1);
      const bodyText = a.body.toString("latin1");
      const mine = originLog.filter((o) => o.fuzzId === fid);
      if (a.status === 500 && bodyText.includes("herdless internal error"))
        flag("internal-500", `${req.bytes.slice(0, 400).replace(/\r\n/g, "|")} origin=${JSON.stringify(mine.map((o) => [o.status, o.kind, o.headers.map((x) => x.join(":").slice(0, 80))]))}`);
      else if (a.status >= 500 && !/fwd-status=5/.test(cs) && mine.some((o) => ["cl", "chunked", "interim", "dupclsame", "none"].includes(o.kind) && o.status >= 200 && o.status < 600 && !o.headers.some(([k2]) => k2 === "x-big"))) {
        const originSide = mine.map((o) => [o.status, o.kind, o.headers.map((x) => x.join(":").slice(0, 60))]);
        flag(`herdless-${a.status}-on-valid`, `cs=${cs} body=${bodyText.slice(0, 200)} req=${req.bytes.slice(0, 200).replace(/\r\n/g, "|")} origin=${JSON.stringify(originSide).slice(0, 600)}`);
      }
      if (a.status >= 400) {
        const g = `${a.status} ${detail} ${bodyText.replace(/#\d+|k\d+|127\.0\.0\.1:\d+|c\d+/g, "").slice(0, 70).replace(/\n/g, " ")}`;
        if (!groups.has(g)) groups.set(g, `${req.bytes.slice(0, 160).replace(/\r\n/g, "|")}`);
      }
      if (a.status === 0) flag("no-status", `${JSON.stringify(a.text.slice(0, 200))} req=${req.bytes.slice(0, 300).replace(/\r\n/g, "|")} origin=${JSON.stringify(mine.map((o) => [o.status, o.kind, o.headers.map((x) => x.join(":").slice(0, 80))]))}`);
      const ce = h(a, "content-encoding").join(",").toLowerCase();
      if (ce.includes("gzip") && a.status !== 304) {
        const ae = norm(req.hdr.get("accept-encoding"))?.toLowerCase() ?? "";
        if (!/gzip(?!;q=0(\.0*)?\b)/.test(ae) && !/\*(?!;q=0)/.test(ae) && !/fwd=(method|bypass)/.test(cs) && /hit|stale|collapsed/.test(cs))
          flag("gzip-to-non-accepting", `ae=${ae} cs=${cs}`);
      }
      // which origin answer is this?
      const m = /^#(\d+) /.exec(bodyText);
      if (!m) continue;
      const o = originLog[Number(m[1])]!;
      if (!o.url.startsWith(`/k${req.k}`) || (o.url.length > `/k${req.k}`.length && /\d/.test(o.url[`/k${req.k}`.length]!)))
        flag("wrong-url", `client k${req.k} got body of ${o.url.slice(0, 80)}`);
      const isMineFresh = o.fuzzId === fid;
      const vary = o.headers.filter(([k2]) => k2 === "vary").map(([, v]) => v).join(",").toLowerCase().split(",").map((s) => s.trim()).filter(Boolean);
      if (!isMineFresh) {
        for (const name of vary) {
          if (name === "accept-encoding" || name === "*" || name === "x-fuzz-id" || name.startsWith("x-h") || name === "host") continue;
          const seenV = o.reqHeaders[name];
          const seen = seenV === undefined ? null : Array.isArray(seenV) ? seenV.join(", ") : seenV;
          const own = norm(req.hdr.get(name));
          const nn = (s: string | null) => (s === null ? null : s.replace(/\s*,\s*/g, ",").trim());
          if (nn(seen) !== nn(own) && !(name === "accept-language" && nn(seen)?.toLowerCase() === nn(own)?.toLowerCase()))
            flag("vary-mismatch", `${name}: origin saw ${seen} for ${o.fuzzId}, served to ${fid} with ${own}; cs=${cs} url=${o.url.slice(0, 50)}`);
        }
        if (vary.includes("x-fuzz-id")) flag("vary-fuzzid", `served ${o.fuzzId}'s x-fuzz-id variant to ${fid}; cs=${cs}`);
        const auth = o.reqHeaders.authorization;
        const cc = o.headers.filter(([k2]) => k2 === "cache-control").map(([, v]) => v).join(",");
        if (auth && !/public|s-maxage|must-revalidate/.test(cc)) flag("auth-leak", `${o.fuzzId}'s auth answer (${cc}) served to ${fid} cs=${cs}`);
        if (o.reqHeaders.cookie) flag("cookie-leak", `${o.fuzzId}'s cookie answer served to ${fid} cs=${cs}`);
        if (/(^|,)\s*(private|no-store)\s*(,|$)/.test(cc) && !/collapsed/.test(cs)) flag("private-leak", `${o.fuzzId}'s ${cc} answer served to ${fid} cs=${cs}`);
        if (vary.includes("*") && !/collapsed/.test(cs)) flag("vary-star-leak", `${o.fuzzId}'s Vary:* answer served to ${fid} cs=${cs}`);
      }
      for (const sc of h(a, "set-cookie")) {
        const from = originLog[Number(/s=(\d+)/.exec(sc)?.[1])];
        if (from?.fuzzId !== fid) flag("set-cookie-leak", `${sc} to ${fid} from ${from?.fuzzId} cs=${cs}`);
      }
      // stored entry vs origin
      if (/hit/.test(cs) && o.kind === "cl" && req.method.toUpperCase() === "GET" && a.status === o.status && !h(a, "content-range").length) {
        const expected = o.body;
        if (bodyText !== expected) flag("stored-body-differs", `got ${bodyText.slice(0, 80)} expected ${expected.slice(0, 80)}`);
        for (const name of ["etag", "last-modified", "content-type"]) {
          const want = o.headers.filter(([k2]) => k2 === name).map(([, v]) => v).join(", ");
          const got = h(a, name).join(", ");
          if (want !== got && !(want === "" && name === "content-type") && !originLog.some((x) => x.n > o.n && x.url === o.url && x.status === 304)) flag("stored-header-differs", `${name}: origin ${want.slice(0, 40)} served ${got.slice(0, 40)} cs=${cs}`);
        }
      }
      if (o.kind !== "cl" && o.kind !== "short" && o.kind !== "interim" && o.kind !== "chunked" && o.kind !== "dupclsame" && /hit/.test(cs))
        flag("stored-bad-framing", `${o.kind} stored, served to ${fid} cs=${cs}`);
    }
  }
  console.log("statuses", JSON.stringify([...statusCount].sort()));
  console.log("origin requests", originLog.length);
  for (const [g, ex] of [...groups].sort()) console.log("GROUP", g, "<=", ex);
  console.log(`FINDINGS ${findings.length}`);
  await cache.close().catch((e: unknown) => flag("close", String(e)));
  origin.server.closeAllConnections();
  origin.server.close();
  process.exit(0);
}
void main();
