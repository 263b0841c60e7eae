/**
 * The session load of bench:sessions, in its own process (forked with an IPC channel by
 * bench/sessions.ts) so that neither its CPU nor its event loop mixes with the write load's:
 * it holds N metaraft sessions (or N etcd leases) over a few connections and heartbeats each
 * one every TTL/3, spread evenly over that interval: every `tickMs` each connection sends the
 * next slice of its own sessions, so that a pass over all of them takes one interval.
 *
 * - metaraft: one `sessionKeepAlive` message per slice (MetaraftClient.keepAlive), its ids
 *   answered together: every id of a message gets the message's latency.
 * - etcd: one LeaseKeepAlive bidirectional gRPC stream per connection (what etcd's own client
 *   keeps), one request per lease written on it, each answered on its own; the etcd3 package.
 *
 * A session the cluster reports expired is a false expiry: the load never stops heartbeating
 * (until `stop`). The parent opens and closes measurement windows; a window reports heartbeat
 * latency (per session heartbeat, HdrHistogram), messages, failures, the longest gap between
 * successful replies per connection, and the false expiries seen in it.
 *
 * IPC: the parent sends `{ id, kind, ... }` commands (see `Command`) and gets `{ id, ok, ... }`
 * or `{ id, ok: false, error }` back.
 */
import { Etcd3, type IDuplexStream, type ILeaseKeepAliveRequest, type ILeaseKeepAliveResponse } from "etcd3";
import { MetaraftClient } from "../src/client/client.js";
import { errorCode, type LatencyUs, latencyHistogram, latencySummary } from "./common.js";

/** Heartbeat messages one metaraft connection has in flight at most; a tick past it waits. */
const HEARTBEAT_INFLIGHT_MAX = 64;
/** After a failed heartbeat its slice is sent again this soon (the client's KEEPALIVE_RETRY_MS). */
const RETRY_MS = 200;
/** An etcd keepalive stream that broke is reopened this soon. */
const REOPEN_MS = 200;
/** Per create call, across the client's retries. */
const CREATE_TIMEOUT_MS = 30_000;
/** False-expiry ids kept to show in the results (all are counted). */
const EXPIRED_IDS_KEPT = 20;

type Id = number | string;

export type Command =
  | {
      readonly kind: "init";
      readonly system: "metaraft";
      readonly endpoints: readonly { host: string; port: number }[];
      readonly clusterId: string;
      readonly connections: number;
      readonly ttlMs: number;
      readonly tickMs: number;
    }
  | {
      readonly kind: "init";
      readonly system: "etcd";
      /** host:port of the members to talk to (the leader first). */
      readonly hosts: readonly string[];
      readonly connections: number;
      readonly ttlMs: number;
      readonly tickMs: number;
    }
  /** Opens `count` more sessions, `inflight` creates at once over the connections. */
  | { readonly kind: "create"; readonly count: number; readonly inflight: number }
  /** on: a new window starts (its counters reset); off: it ends and its figures are returned. */
  | { readonly kind: "window"; readonly on: boolean }
  /** Stops heartbeating: the sessions then expire. */
  | { readonly kind: "stop" }
  | { readonly kind: "exit" };

export interface CreateReply {
  readonly created: number;
  readonly ms: number;
  readonly errors: number;
  readonly error_codes: Record<string, number>;
  readonly held: number;
}

export interface WindowReply {
  readonly seconds: number;
  readonly held: number;
  /** Session heartbeats acknowledged in the window. */
  readonly heartbeats: number;
  /** Heartbeat messages sent (metaraft: one per slice; etcd: one per lease). */
  readonly messages: number;
  /** Messages that failed (metaraft) or stream breaks (etcd); each is retried. */
  readonly failures: number;
  readonly failure_codes: Record<string, number>;
  /** Ticks that found HEARTBEAT_INFLIGHT_MAX messages in flight and waited. */
  readonly ticks_skipped: number;
  /** Per heartbeat acknowledged, from its first send to its acknowledgement. */
  readonly latency_us: LatencyUs;
  /** The longest time between two successful replies on a connection, per connection. */
  readonly max_gap_ms: number[];
  /** When each connection's first successful reply after the window opened came (ms after it). */
  readonly first_ok_ms: (number | null)[];
  readonly false_expiries: number;
  readonly false_expiry_ids: Id[];
  /** Since the load started. */
  readonly false_expiries_total: number;
}

/** One connection's share of the sessions and its heartbeat bookkeeping. */
abstract class Lane {
  readonly ids: Id[] = [];
  #cursor = 0;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  lastOkAt = 0;
  maxGapMs = 0;
  firstOkAt: number | null = null;

  constructor(
    readonly load: SessionLoad,
    readonly index: number,
  ) {}

  abstract create(): Promise<Id>;
  /** Sends one slice; acknowledgements and failures go to `load`. */
  abstract send(ids: Id[]): void;
  abstract close(): void;

  start(): void {
    const { tickMs, connections } = this.load;
    // Connections tick at staggered offsets, so the cluster sees a message every tickMs/connections.
    setTimeout(
      () => {
        if (this.#stopped) return;
        this.#timer = setInterval(() => this.tick(), tickMs);
      },
      Math.round((this.index * tickMs) / connections),
    );
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
  }

  /** Busy: a tick waits rather than piling up messages. */
  get saturated(): boolean {
    return false;
  }

  tick(): void {
    if (this.#stopped || this.ids.length === 0) return;
    if (this.saturated) {
      this.load.window.ticksSkipped++;
      return;
    }
    const size = Math.ceil(this.ids.length / this.load.ticksPerInterval);
    if (this.#cursor >= this.ids.length) this.#cursor = 0;
    const slice = this.ids.slice(this.#cursor, this.#cursor + size);
    this.#cursor += size;
    this.send(slice);
  }

  ok(at: number): void {
    if (this.lastOkAt > 0) this.maxGapMs = Math.max(this.maxGapMs, at - this.lastOkAt);
    this.lastOkAt = at;
    this.firstOkAt ??= at;
  }

  /** The cluster says `id` is gone: it is counted and no longer heartbeated. */
  drop(id: Id): void {
    const at = this.ids.indexOf(id);
    if (at >= 0) this.ids.splice(at, 1);
  }
}

class MetaraftLane extends Lane {
  readonly client: MetaraftClient;
  #inflight = 0;

  constructor(load: SessionLoad, index: number, options: Extract<Command, { kind: "init" }>) {
    super(load, index);
    if (options.system !== "metaraft") throw new Error("not a metaraft init");
    this.client = new MetaraftClient({
      endpoints: options.endpoints,
      clusterId: options.clusterId,
      timeoutMs: CREATE_TIMEOUT_MS,
    });
  }

  override get saturated(): boolean {
    return this.#inflight >= HEARTBEAT_INFLIGHT_MAX;
  }

  async create(): Promise<Id> {
    const reply = await this.client.write("sessionCreate", { ttlMs: this.load.ttlMs });
    return reply.sessionId as number;
  }

  send(ids: Id[], firstSentAt = process.hrtime.bigint()): void {
    const load = this.load;
    const window = load.window;
    window.messages++;
    this.#inflight++;
    // The client's own deadline for a heartbeat (SessionKeeper): one interval.
    this.client.keepAlive(ids as number[], load.intervalMs).then(
      (reply) => {
        this.#inflight--;
        const now = Date.now();
        const us = Number((process.hrtime.bigint() - firstSentAt) / 1000n);
        const expired = new Set(reply.expired as number[]);
        const acked = ids.length - expired.size;
        if (acked > 0) {
          load.window.histogram.recordValueWithCount(Math.max(1, us), acked);
          load.window.heartbeats += acked;
        }
        for (const id of expired) {
          load.falseExpiry(id);
          this.drop(id);
        }
        this.ok(now);
      },
      (error: unknown) => {
        this.#inflight--;
        load.failure(errorCode(error));
        // Sent again until it gets through, unless a whole interval passed: the next pass has it.
        const ageMs = Number((process.hrtime.bigint() - firstSentAt) / 1_000_000n);
        if (ageMs + RETRY_MS < load.intervalMs && !load.stopped) {
          setTimeout(() => this.send(ids, firstSentAt), RETRY_MS);
        }
      },
    );
  }

  close(): void {
    this.client.close();
  }
}

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

class EtcdLane extends Lane {
  readonly client: Etcd3;
  #stream: KeepAliveStream | undefined;
  #opening = false;
  /** Leases written on the stream and not yet answered: when each was first sent. */
  readonly #pending = new Map<string, bigint>();

  constructor(load: SessionLoad, index: number, options: Extract<Command, { kind: "init" }>) {
    super(load, index);
    if (options.system !== "etcd") throw new Error("not an etcd init");
    this.client = new Etcd3({ hosts: [...options.hosts] });
  }

  async create(): Promise<Id> {
    const reply = await this.client.leaseClient.leaseGrant({ TTL: Math.round(this.load.ttlMs / 1000) });
    return reply.ID;
  }

  #open(): void {
    if (this.#opening || this.#stream || this.load.stopped) return;
    this.#opening = true;
    this.client.leaseClient.leaseKeepAlive().then(
      (stream) => {
        this.#opening = false;
        this.#stream = stream;
        const broken = (error: unknown) => {
          if (this.#stream !== stream) return;
          this.#stream = undefined;
          this.load.failure(errorCode(error));
          setTimeout(() => this.#reopen(), REOPEN_MS);
        };
        stream.on("data", (res: ILeaseKeepAliveResponse) => this.#answered(res));
        stream.on("error", broken);
        stream.on("end", () => broken(new Error("stream ended")));
        this.#reopen();
      },
      (error: unknown) => {
        this.#opening = false;
        this.load.failure(errorCode(error));
        setTimeout(() => this.#open(), REOPEN_MS);
      },
    );
  }

  /** A new stream: what the broken one left unanswered is sent again (its first send time kept). */
  #reopen(): void {
    if (!this.#stream) {
      this.#open();
      return;
    }
    for (const id of this.#pending.keys()) this.#stream.write({ ID: id });
  }

  #answered(res: ILeaseKeepAliveResponse): void {
    const sentAt = this.#pending.get(res.ID);
    if (sentAt === undefined) return;
    this.#pending.delete(res.ID);
    const load = this.load;
    // etcd answers a lease it does not hold with TTL 0.
    if (Number(res.TTL) <= 0) {
      load.falseExpiry(res.ID);
      this.drop(res.ID);
    } else {
      load.window.histogram.recordValue(Math.max(1, Number((process.hrtime.bigint() - sentAt) / 1000n)));
      load.window.heartbeats++;
    }
    this.ok(Date.now());
  }

  send(ids: Id[]): void {
    const now = process.hrtime.bigint();
    this.load.window.messages += ids.length;
    for (const id of ids) if (!this.#pending.has(id as string)) this.#pending.set(id as string, now);
    const stream = this.#stream;
    if (!stream) {
      this.#open();
      return;
    }
    for (const id of ids) stream.write({ ID: id as string });
  }

  override start(): void {
    this.#open();
    super.start();
  }

  close(): void {
    this.#stream?.end();
    this.#stream = undefined;
    this.client.close();
  }
}

class Window {
  readonly startedAt = Date.now();
  readonly histogram = latencyHistogram();
  heartbeats = 0;
  messages = 0;
  failures = 0;
  readonly failureCodes: Record<string, number> = {};
  ticksSkipped = 0;
  falseExpiries = 0;
  readonly falseExpiryIds: Id[] = [];
}

class SessionLoad {
  readonly lanes: Lane[];
  readonly ttlMs: number;
  readonly tickMs: number;
  readonly connections: number;
  readonly intervalMs: number;
  readonly ticksPerInterval: number;
  window = new Window();
  falseExpiriesTotal = 0;
  stopped = false;
  #started = false;

  constructor(options: Extract<Command, { kind: "init" }>) {
    this.ttlMs = options.ttlMs;
    this.tickMs = options.tickMs;
    this.connections = options.connections;
    this.intervalMs = Math.floor(options.ttlMs / 3);
    this.ticksPerInterval = Math.max(1, Math.round(this.intervalMs / options.tickMs));
    this.lanes = Array.from({ length: options.connections }, (_, i) =>
      options.system === "metaraft" ? new MetaraftLane(this, i, options) : new EtcdLane(this, i, options),
    );
  }

  get held(): number {
    return this.lanes.reduce((n, lane) => n + lane.ids.length, 0);
  }

  falseExpiry(id: Id): void {
    this.falseExpiriesTotal++;
    this.window.falseExpiries++;
    if (this.window.falseExpiryIds.length < EXPIRED_IDS_KEPT) this.window.falseExpiryIds.push(id);
  }

  failure(code: string): void {
    this.window.failures++;
    this.window.failureCodes[code] = (this.window.failureCodes[code] ?? 0) + 1;
  }

  /** Opens `count` sessions, `inflight` at a time; each is heartbeated from its create on. */
  async create(count: number, inflight: number): Promise<CreateReply> {
    if (!this.#started) {
      this.#started = true;
      for (const lane of this.lanes) lane.start();
    }
    const t0 = Date.now();
    let left = count;
    let created = 0;
    let errors = 0;
    const codes: Record<string, number> = {};
    const loop = async (i: number) => {
      const lane = this.lanes[i % this.lanes.length]!;
      while (left > 0) {
        left--;
        try {
          lane.ids.push(await lane.create());
          created++;
        } catch (error) {
          left++;
          errors++;
          const code = errorCode(error);
          codes[code] = (codes[code] ?? 0) + 1;
          if (errors > count)
            throw new Error(`more create errors than sessions asked for: ${JSON.stringify(codes)}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(inflight, count) }, (_, i) => loop(i)));
    return { created, ms: Date.now() - t0, errors, error_codes: codes, held: this.held };
  }

  openWindow(): void {
    this.window = new Window();
    for (const lane of this.lanes) {
      lane.maxGapMs = 0;
      lane.firstOkAt = null;
    }
  }

  closeWindow(): WindowReply {
    const w = this.window;
    const now = Date.now();
    // A connection silent since its last reply has a gap that is still open: count it.
    const gaps = this.lanes.map((lane) =>
      Math.max(lane.maxGapMs, lane.lastOkAt > 0 ? now - Math.max(lane.lastOkAt, w.startedAt) : 0),
    );
    return {
      seconds: Number(((now - w.startedAt) / 1000).toFixed(3)),
      held: this.held,
      heartbeats: w.heartbeats,
      messages: w.messages,
      failures: w.failures,
      failure_codes: w.failureCodes,
      ticks_skipped: w.ticksSkipped,
      latency_us: latencySummary(w.histogram),
      max_gap_ms: gaps,
      first_ok_ms: this.lanes.map((lane) => (lane.firstOkAt === null ? null : lane.firstOkAt - w.startedAt)),
      false_expiries: w.falseExpiries,
      false_expiry_ids: w.falseExpiryIds,
      false_expiries_total: this.falseExpiriesTotal,
    };
  }

  stop(): void {
    this.stopped = true;
    for (const lane of this.lanes) lane.stop();
  }

  close(): void {
    this.stop();
    for (const lane of this.lanes) lane.close();
  }
}

let load: SessionLoad | undefined;

async function handle(command: Command): Promise<Record<string, unknown>> {
  switch (command.kind) {
    case "init":
      load = new SessionLoad(command);
      return {};
    case "create":
      return { ...(await need().create(command.count, command.inflight)) };
    case "window":
      if (command.on) {
        need().openWindow();
        return {};
      }
      return { ...need().closeWindow() };
    case "stop":
      need().stop();
      return {};
    case "exit":
      load?.close();
      setImmediate(() => process.exit(0));
      return {};
  }
}

function need(): SessionLoad {
  if (!load) throw new Error("no init yet");
  return load;
}

process.on("message", (message: Command & { id: number }) => {
  handle(message).then(
    (reply) => process.send!({ id: message.id, ok: true, ...reply }),
    (error: unknown) => process.send!({ id: message.id, ok: false, error: String(error) }),
  );
});
// The bench is gone: so is its load.
process.on("disconnect", () => process.exit(0));
