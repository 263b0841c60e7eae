import { connect, type Socket } from "node:net";
import { pack, unpack } from "msgpackr";
import { MetaraftError } from "../errors.js";
import { isPushFrame, PROTOCOL_VERSION } from "../protocol/index.js";
import { type Runtime, sleep, systemRuntime, type Timer } from "../runtime.js";
import { encodeFrame, FrameDecoder } from "../transport/index.js";
import { WriteBatcher } from "../transport/write-batcher.js";

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface RpcClientOptions {
  readonly endpoints: readonly Endpoint[];
  readonly clusterId: string;
  /** Per call, across retries. */
  readonly timeoutMs?: number;
  /**
   * Per attempt: a connection that has not answered by then (a frozen or partitioned node that
   * keeps its socket open) is left, and the call is retried on another member with the same
   * fields (a write keeps its call id, so the replay cache answers if the first attempt committed).
   */
  readonly attemptTimeoutMs?: number;
  /** Deadlines, pings and backoff (a simulator passes a virtual runtime). */
  readonly runtime?: Runtime;
  /** See RPC_CLIENT_DEFAULTS.pingIdleMs and pongTimeoutMs. */
  readonly pingIdleMs?: number;
  readonly pongTimeoutMs?: number;
  /** Calls in flight on the connection; more wait for a slot. */
  readonly inflightMax?: number;
  readonly frameBytesMax?: number;
  /**
   * Learn the other members' client addresses from hellos and NOT_LEADER answers (default
   * true). Off, the client uses the given endpoints only: what a client behind a proxy, NAT or
   * load balancer needs (etcd's clients do not sync endpoints unless asked to, either).
   */
  readonly discoverEndpoints?: boolean;
}

export const RPC_CLIENT_DEFAULTS = {
  timeoutMs: 10_000,
  /**
   * Five times a loaded leader's p999 (about 0.2 s here), and about one election timeout (0.5 to
   * 1 s by default): a frozen leader costs a call about what the election costs.
   */
  attemptTimeoutMs: 1_000,
  inflightMax: 4096,
  frameBytesMax: 16 * 1024 * 1024,
  /**
   * With calls waiting and nothing heard for this long, the connection sends a ping. A node
   * answers pings before its handler, so a live but busy node (a slow admin call, a long
   * read) pongs while a frozen one cannot.
   */
  pingIdleMs: 250,
  /**
   * No frame at all within this long of a ping: the connection is down and every call on it is
   * retried elsewhere, however long its own attempt deadline (admin calls wait 10 s). Three
   * times a loaded leader's p999, so a GC pause or an fsync does not count as a freeze.
   */
  pongTimeoutMs: 750,
} as const;

/** How often a connection with calls waiting checks whether it has heard from its node. */
const LIVENESS_CHECK_MS = 50;

interface Waiting {
  readonly resolve: (body: Record<string, unknown>) => void;
  readonly reject: (error: Error) => void;
}

/** What a stream (a watch) on a connection is told; see `RpcClient.openStream`. */
export interface StreamHandlers {
  /**
   * A frame the server pushed on the connection (every one: the stream picks its own by id).
   * Throwing gives up the connection, as a broken frame does.
   */
  frame(frame: { readonly push: unknown } & Readonly<Record<string, unknown>>): void;
  /** The connection is gone: the stream ends or resumes elsewhere. */
  closed(error: MetaraftError): void;
}

/** An open stream: the op's reply, and its connection's flow control. */
export interface StreamHandle {
  readonly reply: Record<string, unknown>;
  /** Where it is served. */
  readonly endpoint: Endpoint;
  /**
   * Stops reading the connection: TCP backpressure reaches the server, which then stops
   * buffering for this connection. Every call on the connection waits meanwhile.
   */
  pause(): void;
  resume(): void;
  /** Resolves once the connection is gone, with why. */
  readonly closed: Promise<MetaraftError>;
}

/** One authenticated, pipelined connection to one node. */
class Connection {
  readonly #socket: Socket;
  readonly #waiting = new Map<number, Waiting>();
  #nextId = 1;
  #closed: MetaraftError | undefined;
  readonly ready: Promise<{ nodeId?: number; members?: unknown }>;
  readonly #out: WriteBatcher;
  /** When a frame last arrived (or the connection opened, or a first call waited). */
  #heardAt: number;
  /** The id of the ping awaiting its pong, and when it went out. */
  #ping: { id: number; at: number } | undefined;
  #watch: Timer | undefined;
  #greeting = false;
  readonly #streams = new Set<StreamHandlers>();
  #paused = false;

  constructor(
    readonly endpoint: Endpoint,
    clusterId: string,
    frameBytesMax: number,
    readonly pingIdleMs: number,
    readonly pongTimeoutMs: number,
    readonly runtime: Runtime,
  ) {
    this.#heardAt = runtime.now();
    this.#socket = connect({ host: endpoint.host, port: endpoint.port });
    this.#socket.setNoDelay(true);
    this.#out = new WriteBatcher(this.#socket, frameBytesMax, undefined, runtime);
    let greeting: Waiting | undefined;
    this.ready = new Promise((resolve, reject) => {
      greeting = { resolve, reject };
    });
    const decoder = new FrameDecoder({
      frameBytesMax,
      onFrame: (payload) => {
        const body = unpack(payload) as Record<string, unknown> & { id?: number; ok?: boolean };
        // Any frame shows the node is alive, a pong or not.
        this.#heardAt = this.runtime.now();
        this.#ping = undefined;
        if (greeting) {
          const g = greeting;
          greeting = undefined;
          this.#greeting = false;
          if (body.ok) g.resolve(body);
          else if (body.kind === "refused" && body.error === undefined) {
            // A peer listener's refusal of a hello it cannot read: this is a Raft port.
            const where = `${endpoint.host}:${endpoint.port}`;
            g.reject(
              new MetaraftError(
                "MR_ERR_WRONG_PORT",
                typeof body.nodeId === "number" && typeof body.client === "string"
                  ? `${where} is node ${body.nodeId}'s peer port; its client port is ${body.client}`
                  : `${where} is a metaraft node's peer (Raft) port, not its client port`,
                { details: { ...(typeof body.client === "string" ? { client: body.client } : {}) } },
              ),
            );
          } else g.reject(MetaraftError.fromJSON(body.error));
          return;
        }
        if (isPushFrame(body)) {
          for (const stream of this.#streams) {
            try {
              stream.frame(body);
            } catch (error) {
              this.#fail(
                error instanceof MetaraftError
                  ? error
                  : new MetaraftError("MR_ERR_INTERNAL", String(error), { cause: error }),
              );
              return;
            }
          }
          return;
        }
        const waiting = this.#waiting.get(body.id ?? 0);
        if (body.pong === true) return;
        if (!waiting) {
          if (body.id === 0 && !body.ok) this.#fail(MetaraftError.fromJSON(body.error));
          return;
        }
        this.#waiting.delete(body.id!);
        if (body.ok) waiting.resolve(body);
        else waiting.reject(MetaraftError.fromJSON(body.error));
      },
    });
    // Written before anything else (the socket buffers it until connected), so the hello is
    // always the first frame, even when calls are made while the connection is being set up.
    this.#socket.write(encodeFrame(pack({ protocol: PROTOCOL_VERSION, clusterId })));
    // The hello is a call too: a node that accepts and never greets is as frozen as one that
    // never answers.
    this.#greeting = true;
    this.#watch = this.runtime.every(LIVENESS_CHECK_MS, () => this.#checkLiveness()).unref();
    this.#socket.on("data", (chunk: Buffer) => {
      const error = decoder.push(chunk);
      if (error) this.#fail(error);
    });
    const closed = (cause?: unknown) => {
      const error = new MetaraftError("MR_ERR_CONNECTION_CLOSED", `${endpoint.host}:${endpoint.port}`, {
        cause,
      });
      greeting?.reject(error);
      greeting = undefined;
      this.#fail(error);
    };
    this.#socket.on("error", closed);
    this.#socket.on("close", () => closed());
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  #fail(error: MetaraftError): void {
    this.#watch?.cancel();
    this.#watch = undefined;
    this.#closed ??= error;
    for (const waiting of this.#waiting.values()) waiting.reject(error);
    this.#waiting.clear();
    const streams = [...this.#streams];
    this.#streams.clear();
    for (const stream of streams) stream.closed(this.#closed);
    this.#socket.destroy();
  }

  /** Routes pushed frames to `stream` until it unsubscribes or the connection fails. */
  subscribe(stream: StreamHandlers): () => void {
    if (this.#closed) {
      const error = this.#closed;
      this.runtime.defer(() => stream.closed(error));
      return () => {};
    }
    this.#streams.add(stream);
    // A stream waits for frames as a call waits for its answer: a silent node is left.
    this.#heardAt = this.runtime.now();
    this.#watch ??= this.runtime.every(LIVENESS_CHECK_MS, () => this.#checkLiveness()).unref();
    return () => {
      this.#streams.delete(stream);
    };
  }

  pause(): void {
    if (this.#paused || this.#closed) return;
    this.#paused = true;
    this.#socket.pause();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    // Quiet while paused is this client's doing, not the node's.
    this.#heardAt = this.runtime.now();
    this.#ping = undefined;
    this.#socket.resume();
    this.#watch ??= this.runtime.every(LIVENESS_CHECK_MS, () => this.#checkLiveness()).unref();
  }

  call(request: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    if (this.#waiting.size === 0) this.#heardAt = this.runtime.now();
    this.#watch ??= this.runtime.every(LIVENESS_CHECK_MS, () => this.#checkLiveness()).unref();
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#out.write(pack({ ...request, id }));
    });
  }

  /** While calls wait: ping a connection gone quiet, and give up on one that does not pong. */
  #checkLiveness(): void {
    // Paused, the client reads nothing, pongs included: its silence says nothing of the node.
    if (this.#paused || (this.#waiting.size === 0 && !this.#greeting && this.#streams.size === 0)) {
      this.#watch?.cancel();
      this.#watch = undefined;
      this.#ping = undefined;
      return;
    }
    const now = this.runtime.now();
    if (this.#ping) {
      if (now - this.#ping.at >= this.pongTimeoutMs) {
        this.#fail(
          new MetaraftError(
            "MR_ERR_CONNECTION_CLOSED",
            `${this.endpoint.host}:${this.endpoint.port} did not answer a ping in ${this.pongTimeoutMs} ms`,
          ),
        );
      }
    } else if (now - this.#heardAt >= this.pingIdleMs) {
      this.#ping = { id: this.#nextId++, at: now };
      this.#out.write(pack({ op: "ping", id: this.#ping.id }));
    }
  }

  close(): void {
    this.#fail(new MetaraftError("MR_ERR_CONNECTION_CLOSED", "closed by the client"));
  }
}

/** Retryable answers from a node that is still the one to ask. */
const STAY_ON = new Set(["MR_ERR_NOT_READY", "MR_ERR_PROPOSAL_DROPPED"]);

const RETRYABLE = new Set([
  "MR_ERR_NOT_LEADER",
  "MR_ERR_NOT_READY",
  "MR_ERR_CONNECTION_CLOSED",
  "MR_ERR_PROPOSAL_DROPPED",
  "MR_ERR_UNAVAILABLE",
]);

/**
 * Finds the leader and keeps one pipelined connection to it: a NOT_LEADER answer names the
 * leader, whose endpoint the client learned from the hellos; a dead connection moves on to the
 * next endpoint. Every call has a deadline; retries back off a little.
 */
export class RpcClient {
  readonly #options: RpcClientOptions;
  readonly #runtime: Runtime;
  #connection: Connection | undefined;
  #target = 0;
  /** The endpoints given, then those learned from hellos and NOT_LEADER answers. */
  readonly #endpoints: Endpoint[];
  readonly #endpointOfNode = new Map<number, number>();
  /** Members in the last hello that listed them: what "a quorum reachable" is counted against. */
  #memberCount = 0;
  #inflight = 0;
  readonly #slotWaiters: (() => void)[] = [];

  constructor(options: RpcClientOptions) {
    if (options.endpoints.length === 0) throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "no endpoints");
    this.#options = options;
    this.#runtime = options.runtime ?? systemRuntime;
    this.#endpoints = [...options.endpoints];
  }

  /** The index of `host:port` in the endpoint list, added when new; undefined when malformed. */
  #endpointIndex(address: unknown): number | undefined {
    if (typeof address !== "string") return undefined;
    const colon = address.lastIndexOf(":");
    const port = Number(address.slice(colon + 1));
    if (colon <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) return undefined;
    const host = address.slice(0, colon);
    const known = this.#endpoints.findIndex((e) => e.host === host && e.port === port);
    if (known >= 0) return known;
    if (this.#options.discoverEndpoints === false) return undefined;
    this.#endpoints.push({ host, port });
    return this.#endpoints.length - 1;
  }

  /** The current connection, or a new one to the current target (its hello may be under way). */
  #ensureConnection(): Connection {
    if (this.#connection && !this.#connection.closed) return this.#connection;
    const index = this.#target % this.#endpoints.length;
    const connection = new Connection(
      this.#endpoints[index]!,
      this.#options.clusterId,
      this.#options.frameBytesMax ?? RPC_CLIENT_DEFAULTS.frameBytesMax,
      this.#options.pingIdleMs ?? RPC_CLIENT_DEFAULTS.pingIdleMs,
      this.#options.pongTimeoutMs ?? RPC_CLIENT_DEFAULTS.pongTimeoutMs,
      this.#runtime,
    );
    this.#connection = connection;
    connection.ready.then(
      (hello) => {
        if (typeof hello.nodeId === "number") this.#endpointOfNode.set(hello.nodeId, index);
        if (Array.isArray(hello.members)) {
          this.#memberCount = hello.members.length;
          for (const member of hello.members as { id?: unknown; client?: unknown }[]) {
            const at = this.#endpointIndex(member?.client);
            if (at !== undefined && typeof member.id === "number" && !this.#endpointOfNode.has(member.id))
              this.#endpointOfNode.set(member.id, at);
          }
        }
      },
      () => undefined,
    );
    return connection;
  }

  /** Moves to the leader (or the next endpoint), unless another call already moved off `from`. */
  #moveOn(error: MetaraftError, from: Connection | undefined): void {
    if (from !== this.#connection) return;
    const leader = error.details?.leader;
    const known =
      this.#endpointIndex(error.details?.leaderClient) ??
      (typeof leader === "number" ? this.#endpointOfNode.get(leader) : undefined);
    this.#target = known ?? this.#target + 1;
    this.#connection?.close();
    this.#connection = undefined;
  }

  async call(
    op: string,
    fields: Record<string, unknown> = {},
    timeoutMs?: number,
    attemptTimeoutMs?: number,
  ): Promise<Record<string, unknown>> {
    return (await this.#call(op, fields, timeoutMs, attemptTimeoutMs)).reply;
  }

  /**
   * Opens a stream (a `watch`) on whichever member answers, with the retries of `call`; the
   * frames the server then pushes on that connection go to `onFrame` (all of them: the caller
   * picks its own by id). Any member serves streams, so a lost connection's member is left for
   * the next one: the caller reopens where it stopped.
   */
  async openStream(
    op: string,
    fields: Record<string, unknown>,
    onFrame: StreamHandlers["frame"],
    timeoutMs?: number,
  ): Promise<StreamHandle> {
    let settle: (error: MetaraftError) => void = () => {};
    const closed = new Promise<MetaraftError>((resolve) => {
      settle = resolve;
    });
    // Per attempt: a failed attempt's connection must not end the stream that a later one opens.
    let attempt: { open: boolean; lost?: MetaraftError } = { open: false };
    const { reply, connection } = await this.#call(op, fields, timeoutMs, undefined, (c) => {
      const mine: { open: boolean; lost?: MetaraftError } = { open: false };
      attempt = mine;
      return c.subscribe({
        frame: onFrame,
        closed: (error) => {
          if (!mine.open) {
            mine.lost = error;
            return;
          }
          this.#moveOn(error, c);
          settle(error);
        },
      });
    });
    attempt.open = true;
    if (attempt.lost) settle(attempt.lost);
    return {
      reply,
      endpoint: connection.endpoint,
      pause: () => connection.pause(),
      resume: () => connection.resume(),
      closed,
    };
  }

  async #call(
    op: string,
    fields: Record<string, unknown>,
    timeoutMs: number | undefined,
    attemptTimeoutMs: number | undefined,
    attach?: (connection: Connection) => () => void,
  ): Promise<{ reply: Record<string, unknown>; connection: Connection }> {
    const runtime = this.#runtime;
    const deadline = runtime.now() + (timeoutMs ?? this.#options.timeoutMs ?? RPC_CLIENT_DEFAULTS.timeoutMs);
    const attemptMs =
      attemptTimeoutMs ?? this.#options.attemptTimeoutMs ?? RPC_CLIENT_DEFAULTS.attemptTimeoutMs;
    await this.#acquire();
    const sweep = new Map<string, "down" | "no leader">();
    try {
      for (let attempt = 0; ; attempt++) {
        const left = deadline - runtime.now();
        if (left <= 0) throw new MetaraftError("MR_ERR_TIMEOUT", `${op} after ${attempt} attempts`);
        const connection = this.#ensureConnection();
        const attemptEnds = runtime.now() + Math.min(left, attemptMs);
        let detach: (() => void) | undefined;
        try {
          await withTimeout(runtime, connection.ready, attemptEnds - runtime.now());
          detach = attach?.(connection);
          const reply = await withTimeout(
            runtime,
            connection.call({ op, ...fields }),
            Math.max(1, attemptEnds - runtime.now()),
          );
          return { reply, connection };
        } catch (error) {
          detach?.();
          // A silent connection within the call's deadline: suspect it, and try another member.
          const silent =
            error instanceof MetaraftError && error.code === "MR_ERR_TIMEOUT" && deadline - runtime.now() > 0;
          if (!silent && (!(error instanceof MetaraftError) || !RETRYABLE.has(error.code))) throw error;
          // One sweep of every endpoint, each down or knowing no leader, with fewer than a
          // quorum of members answering: no leader can be elected, so say so now rather than
          // retry until the deadline. With a quorum answering, an election is under way: wait.
          const where = `${connection.endpoint.host}:${connection.endpoint.port}`;
          const leader = (error as MetaraftError).details?.leader;
          const down = silent || (error as MetaraftError).code === "MR_ERR_CONNECTION_CLOSED";
          if (down) sweep.set(where, "down");
          else if (
            (error as MetaraftError).code === "MR_ERR_NOT_LEADER" &&
            !(typeof leader === "number" && leader > 0)
          )
            sweep.set(where, "no leader");
          else sweep.clear();
          if (sweep.size >= this.#endpoints.length) {
            const members = this.#memberCount > 0 ? this.#memberCount : this.#endpoints.length;
            const reachable = Math.min(members, [...sweep.values()].filter((v) => v !== "down").length);
            // None answering at all is a cluster still starting, or a wrong address: the
            // deadline decides that, as before.
            if (reachable > 0 && reachable < Math.floor(members / 2) + 1) {
              throw new MetaraftError(
                "MR_ERR_UNAVAILABLE",
                `no quorum: ${reachable} of ${members} members reachable (${op} not attempted further)`,
                { details: { reachable, members } },
              );
            }
            sweep.clear();
          }
          // A leader that is busy (NOT_READY) or shed a proposal (PROPOSAL_DROPPED) is still the
          // one to ask: staying keeps the other calls in flight on its connection, which moving
          // on would close (and a membership call, which has no call id, would then be retried).
          if (!STAY_ON.has((error as MetaraftError).code) || silent) this.#moveOn(error, connection);
          await sleep(runtime, Math.min(10 * 2 ** Math.min(attempt, 5), 200));
        }
      }
    } finally {
      this.#release();
    }
  }

  async #acquire(): Promise<void> {
    if (this.#inflight < (this.#options.inflightMax ?? RPC_CLIENT_DEFAULTS.inflightMax)) {
      this.#inflight++;
      return;
    }
    await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
    this.#inflight++;
  }

  #release(): void {
    this.#inflight--;
    this.#slotWaiters.shift()?.();
  }

  close(): void {
    this.#connection?.close();
    this.#connection = undefined;
  }
}

function withTimeout<T>(runtime: Runtime, promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = runtime.after(ms, () =>
      reject(new MetaraftError("MR_ERR_TIMEOUT", `no answer in ${ms} ms`)),
    );
    promise.then(
      (value) => {
        timer.cancel();
        resolve(value);
      },
      (error: unknown) => {
        timer.cancel();
        reject(error);
      },
    );
  });
}
