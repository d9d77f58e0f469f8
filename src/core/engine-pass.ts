import type { CacheStatus } from "./http/cache-status.ts";
import type { Clock } from "./clock.ts";
import type { RoutePolicy } from "./config.ts";
import type { FillResult } from "./fill/coordinator.ts";
import type { PassMarks } from "./fill/pass-marks.ts";
import type { RequestFacts } from "./http/decision.ts";
import { headerList } from "./http/http.ts";
import type { EngineRequest, EngineResponse } from "./http/respond.ts";
import { storability } from "./http/storability.ts";
import type { OriginResponse } from "./origin/origin-client.ts";

/** The engine's relay, with a listener for the origin's answer. */
export type Relay = (
  request: EngineRequest,
  status: CacheStatus,
  heard: (answer: OriginResponse) => void,
) => Promise<EngineResponse>;

/** What {@link MarkedMisses.take} decided for a miss: relayed (its answer), or the key's one fill (`done` once it ended). */
export type MarkedMiss = { kind: "relayed"; response: Promise<EngineResponse> } | { kind: "fill"; done: () => void };

/**
 * The engine's side of {@link PassMarks}: which fills mark their key, which end its mark,
 * and a marked key's misses relayed while one fills. Only requests without credentials take
 * part: a request with a Cookie or Authorization is relayed anyway (or filled apart, on a
 * route that caches them), and its answer says nothing of what anyone else is answered.
 */
export class MarkedMisses {
  constructor(
    private readonly marks: PassMarks,
    private readonly clock: Clock,
    private readonly relay: Relay,
  ) {}

  /**
   * A miss of a marked key: relayed to the origin now while another fills (Cache-Status as a
   * waiter sent on alone has it: `fwd=uri-miss; detail=uncacheable`), or the key's fill.
   * Undefined when it takes the usual way (not marked, credentials, the key's relays all busy).
   */
  take(
    request: EngineRequest,
    key: string,
    facts: RequestFacts,
    route: RoutePolicy,
    fwd: CacheStatus["fwd"],
  ): MarkedMiss | undefined {
    if (facts.hasCookie || facts.hasAuthorization) return undefined;
    const ranged = request.method === "GET" && request.headers.get("range") !== null;
    const miss = this.marks.take(key, this.clock.now(), ranged);
    if (!miss) return undefined;
    if (miss.way === "fill") return { kind: "fill", done: miss.done };
    const heard = (answer: OriginResponse) => {
      const info = { ...answer, headers: headerList(answer.headers) };
      if (storability("GET", false, false, info, route).storable) this.marks.clear(key);
    };
    const detail = miss.large ? "too-large" : "uncacheable";
    return { kind: "relayed", response: this.relay(request, { fwd, detail }, heard).finally(miss.done) };
  }

  /**
   * What a miss waits for: relayed at once when its key is marked ({@link take}), else
   * `fill`'s result ({@link filled}). A revalidation (`take` false) is never relayed.
   */
  waitFor(
    miss: {
      request: EngineRequest;
      key: string;
      facts: RequestFacts;
      route: RoutePolicy;
      fwd: CacheStatus["fwd"];
      take: boolean;
    },
    fill: () => Promise<FillResult>,
  ): Promise<FillResult | EngineResponse> {
    const { request, key, facts, route, fwd } = miss;
    const marked = miss.take ? this.take(request, key, facts, route, fwd) : undefined;
    if (marked?.kind === "relayed") return marked.response;
    return this.filled(fill(), key, facts, marked);
  }

  /**
   * The result of a fill of `key` (`marked`: what {@link take} said of it), once it came:
   * an answer that could not be shared with anyone marks the key; one stored ends its mark.
   * Not marked by an answer to the request's own input or credentials (`keepsCopy`, as
   * settle.ts says), a `304` to a client's own condition. A body too large to keep (its
   * stream is shared) marks the key for its ranged misses alone: each would otherwise start a
   * fetch of the whole body to cut its part from (a `bytes=-1` read 64 MiB from the origin).
   */
  async filled(
    filling: Promise<FillResult>,
    key: string,
    facts: RequestFacts,
    marked: MarkedMiss | undefined,
  ): Promise<FillResult> {
    try {
      const result = await filling;
      if (facts.hasCookie || facts.hasAuthorization) return result;
      const unshared =
        result.kind === "alone" ||
        (result.kind === "pass" && result.reason === "uncacheable" && !result.keepsCopy && result.fwdStatus !== 304);
      if (unshared) this.marks.mark(key, this.clock.now());
      else if (result.kind === "stream" && result.size === "too-large")
        this.marks.mark(key, this.clock.now(), "ranges");
      else if (result.kind === "entry" || result.kind === "stream") this.marks.clear(key);
      return result;
    } finally {
      if (marked?.kind === "fill") marked.done();
    }
  }
}
