import { withinMs } from "../core/within-ms.ts";
import {
  fromCoordinatorCopy,
  joinedFailure,
  type Coordinator,
  type FillRequest,
  type FillResult,
} from "../core/fill/coordinator.ts";
import { applyPurge } from "../core/admin/purge.ts";
import { headerList } from "../core/http/http.ts";
import { notTheJoinersFailure } from "../core/fill/flight-backoff.ts";
import { variantKey } from "../core/http/key.ts";
import type { Entry } from "../core/http/entry.ts";
import { asJoined, mayTakeJoined, othersUnconfirmed, validatesAlone } from "../core/fill/flight.ts";
import { SharedBody } from "../core/fill/shared-body.ts";
import type { SharedBodyLimits } from "../core/fill/laggards.ts";
import type { Config } from "../core/config.ts";

/**
 * Coordinator calls of one isolate, collapsed per key: while one request of the isolate
 * waits on the key's {@link KeyCoordinatorObject}, the others that need the same key wait
 * on that call instead of making their own. Under a spike the key's object then sees one
 * call per isolate per key, not one per request; each call is a billed Durable Object
 * request and the object answers its callers one after another.
 *
 * An entry (its body is bytes) or a failure is shared as it is (without the origin's error
 * answer when that was the leader's client's alone: {@link joinedFailure}). A streamed body is read
 * once from the object (one RPC stream per isolate, not one per request: the object feeding
 * fifty 20 MB streams took longer than its lease) and teed here with the core's
 * {@link SharedBody}: each request of the isolate gets its own stream of it, at its own
 * pace, and a request that comes while the body still arrives joins it too, as long as its
 * start is kept (up to `cache.maxEntryBytes`, as the object keeps it). A waiter whose
 * variant (Vary) or purges the shared entry does not answer makes its own call, and so does
 * one too late for the start of a body, and a request that must be validated (`revalidate`)
 * never joins.
 *
 * Promises and streams cross requests here, which the runtime allows while the request that
 * made them lives: the leader's call and the read of its body are kept alive with
 * `background` (ctx.waitUntil) until the body ended, and a waiter stops waiting after
 * `joinTimeoutMs` and makes its own call (its own timer also keeps the runtime from taking a
 * waiter for a hung request).
 *
 * @example
 * const flights = new IsolateFlights(config.coordinator.waitTimeoutMs, sharedBodyLimits(config), config);
 * const coordinator = flights.coordinator(coordinatorClient(env.COORDINATOR, config), (p) => ctx.waitUntil(p));
 */
export class IsolateFlights {
  private readonly running = new Map<string, Promise<Shared>>();
  /** Keys a request of this isolate is looking up before it may call the key's object (see {@link lookingUp}). */
  private readonly looking = new Map<string, Lookup>();

  constructor(
    private readonly joinTimeoutMs: number,
    private readonly limits: SharedBodyLimits,
    /** Whose headers a joiner may carry and still take a failure on another's input as its own; whose answers it may take. */
    private readonly config: Config,
  ) {}

  /**
   * `inner`, with this isolate's concurrent fills of one key collapsed onto one call.
   * `landed`: the flight this request waited on before it was built ({@link landing}); its
   * fill of that key takes the flight's answer as any waiter would, though the flight ended.
   */
  coordinator(inner: Coordinator, background: (work: Promise<unknown>) => void, landed?: Landed): Coordinator {
    let waited = landed;
    return {
      fill: (request) => {
        const flight = waited;
        if (flight && request.key === flight.key && !request.revalidate) {
          waited = undefined;
          return this.joinOrCall(inner, request, flight.running);
        }
        return this.fill(inner, request, background);
      },
      ...(inner.invalidate ? { invalidate: inner.invalidate.bind(inner) } : {}),
    };
  }

  /**
   * The flight this isolate runs for `key`, for a request to wait on before it builds anything
   * (its engine, its reads): settles when the leader's answer arrived, or after
   * `joinTimeoutMs`. Under a spike on a cold key the requests that arrive meanwhile then cost
   * next to nothing until the answer is there, instead of queueing their work ahead of the
   * leader's on the isolate's one thread.
   *
   * @example
   * const landing = flights.landing(primary);
   * const landed = landing && (await landing);
   */
  landing(key: string): Promise<Landed | undefined> | undefined {
    const running = this.running.get(key);
    if (!running) return undefined;
    return this.join(running).then(
      (shared) => shared && { key, running, shared },
      // The leader's call failed outright: this request joins that failure through its engine.
      () => ({ key, running }),
    );
  }

  /**
   * Marks `key` as looked up by one request of the isolate (its near-tier read and the purge
   * list, before it may call the key's object): the requests that arrive meanwhile wait for
   * that ({@link lookup}) instead of each building an engine and reading for itself. The mark
   * ends when the request's call for the key starts, or with the function returned (call it
   * when the request is answered); one never ended is ignored after `lapseMs`. A key already
   * marked or in flight is not marked again.
   *
   * @example
   * const done = flights.lookingUp(primary, 1_000);
   * try { return await engine.handle(request); } finally { done(); }
   */
  lookingUp(key: string, lapseMs: number): () => void {
    if (this.running.has(key) || this.lookupOf(key)) return () => undefined;
    let resolve = (): void => undefined;
    const done = new Promise<void>((settle) => (resolve = settle));
    const mark: Lookup = {
      done,
      until: Date.now() + lapseMs,
      end: () => {
        if (this.looking.get(key) === mark) this.looking.delete(key);
        resolve();
      },
    };
    this.looking.set(key, mark);
    return mark.end;
  }

  /**
   * The lookup another request of the isolate runs for `key` ({@link lookingUp}), to wait on
   * for at most `within` ms; undefined when none runs. Once it settled, memory holds what that
   * request found, or its call for the key is in flight ({@link landing}).
   */
  lookup(key: string, within: number): Promise<void> | undefined {
    const mark = this.lookupOf(key);
    if (!mark) return undefined;
    // Its own timer also keeps the runtime from taking a waiter for a hung request.
    return withinMs(mark.done, within).then(() => undefined);
  }

  private lookupOf(key: string): Lookup | undefined {
    const mark = this.looking.get(key);
    if (mark && Date.now() >= mark.until) mark.end();
    return this.looking.get(key);
  }

  /** Whether a call for `key` is in flight from this isolate (or its streamed body still arriving). */
  has(key: string): boolean {
    return this.running.has(key);
  }

  /** Calls in flight now, and streamed bodies still arriving (for tests and stats). */
  get size(): number {
    return this.running.size;
  }

  private async fill(
    inner: Coordinator,
    request: FillRequest,
    background: (work: Promise<unknown>) => void,
  ): Promise<FillResult> {
    if (request.revalidate) return inner.fill(request);
    const running = this.running.get(request.key);
    if (running) return this.joinOrCall(inner, request, running);
    const call = inner.fill(request).then((result) => shareStream(result, this.limits));
    this.running.set(request.key, call);
    // Requests waiting on this key's lookup now wait on the call (landing).
    this.looking.get(request.key)?.end();
    // Joinable until the call failed or answered, or, for a streamed body, until it ended.
    const over = call.then(
      (shared) => shared.body?.ended,
      () => undefined,
    );
    background(
      over.finally(() => {
        if (this.running.get(request.key) === call) this.running.delete(request.key);
      }),
    );
    const shared = await call;
    if (shared.result.kind !== "stream") return shared.result;
    // The leader's stream was opened with the shared body, before any byte could pass it by.
    const first = shared.first;
    shared.first = undefined;
    return first ? { ...shared.result, body: first } : inner.fill(request);
  }

  /**
   * The leader's answer as this waiter's, or its own call when that answer does not answer it.
   * Another request's unconfirmed error (flight.ts othersUnconfirmed: the attacker's `500` to
   * its `Accept-Language: xx`, which the leader's request was) is not this waiter's: it asks
   * the key's object, where the waiters asking so collapse onto one flight whose error, if the
   * origin fails them too, confirms the first and is theirs.
   */
  private async joinOrCall(inner: Coordinator, request: FillRequest, running: Promise<Shared>): Promise<FillResult> {
    const shared = await this.join(running);
    if (shared && (await othersUnconfirmed(shared.result, request, this.config, Date.now())))
      return inner.fill({ ...request, confirming: true });
    const mine = shared === undefined ? undefined : forWaiter(shared, request, this.config);
    return mine ?? inner.fill(request);
  }

  /** The leader's result, or undefined when it did not come within `joinTimeoutMs`. */
  private async join(running: Promise<Shared>): Promise<Shared | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), this.joinTimeoutMs);
    });
    try {
      // A leader whose call failed outright (the object unreachable) fails its waiters the
      // same way: each then falls back as the leader does, without a second wait.
      return await Promise.race([running, timeout]);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }
}

/** A request's lookup of a key before its call (see {@link IsolateFlights.lookingUp}). */
interface Lookup {
  done: Promise<void>;
  /** When the mark is ignored though never ended (epoch ms). */
  until: number;
  end: () => void;
}

/** A flight a request waited on before it was built (see {@link IsolateFlights.landing}). */
export interface Landed {
  key: string;
  running: Promise<Shared>;
  /** The leader's answer; absent when its call failed outright. */
  shared?: Shared;
}

/**
 * The leader's answer as the isolate shares it: a streamed body is read once, into `body`,
 * and `first` is the leader's own stream of it.
 */
export interface Shared {
  result: FillResult;
  body?: SharedBody;
  first?: ReadableStream<Uint8Array>;
}

function shareStream(result: FillResult, limits: SharedBodyLimits): Shared {
  if (result.kind !== "stream") return { result };
  const body = new SharedBody(result.body, {
    ...limits,
    ...(result.bytes !== undefined ? { declaredBytes: result.bytes } : {}),
  });
  return { result, body, first: body.reader() };
}

/** What a waiter gets from its leader's answer, or undefined when it must make its own call. */
function forWaiter({ result: shared, body }: Shared, request: FillRequest, config: Config): FillResult | undefined {
  // The answer to the leader's own Authorization is the leader's; so is one a purge overtook (flight.ts mayTakeJoined).
  if (!mayTakeJoined(shared, request, config)) return undefined;
  switch (shared.kind) {
    case "entry":
      if (validatesAlone(shared.entry)) return { kind: "alone" };
      // Collapsed onto a flight that went to the origin; the object's stored copy is a hit for the waiter too.
      return answersWaiter(shared.entry, request)
        ? { ...asJoined(shared), collapsed: !fromCoordinatorCopy(shared), stored: false }
        : undefined;
    case "failed":
      // A failure on the leader's own input (an attacker's header) is not this request's: it asks for itself.
      return notTheJoinersFailure(shared, request, config) ? undefined : joinedFailure(shared);
    case "pass":
      // An answer about the leader's own input (an attacker's header the origin refused): this request asks itself.
      if (notTheJoinersFailure(shared, request, config)) return undefined;
      return { kind: "alone" };
    case "alone":
      // The answer was not shareable: this request goes to the origin by itself, as a
      // caller that joined the object's flight would.
      return { kind: "alone" };
    case "stream": {
      if (validatesAlone(shared.head)) return { kind: "alone" };
      if (!answersWaiter({ ...shared.head, body: NO_BODY }, request)) return undefined;
      // Undefined once the start of the body is gone (past keepBytes) or the body failed.
      const mine = body?.reader();
      return mine ? { ...asJoined(shared), body: mine } : undefined;
    }
  }
}

const NO_BODY = new Uint8Array(0);

/** Whether the leader's entry answers this waiter: the variant (Vary) it selects, and no purge it knows of covers it. */
function answersWaiter(entry: Entry, request: FillRequest): boolean {
  if (entry.vary.length > 0 && variantKey(request.primary, entry.vary, headerList(request.headers)) !== entry.key)
    return false;
  // A purge this request knows of and the leader's did not (its copy is newer).
  return !request.purges || applyPurge(entry, request.primary, request.purges) === entry;
}
