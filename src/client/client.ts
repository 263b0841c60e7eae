import { randomUUID } from "node:crypto";
import type { Op, ReadEventsReply, ReplyOf } from "../protocol/index.js";
import { type Runtime, systemRuntime } from "../runtime.js";
import { type Endpoint, RpcClient, type RpcClientOptions } from "./rpc-client.js";
import { Session, SessionKeeper } from "./session.js";
import { Watch, type WatchOptions } from "./watch.js";

export interface ClientOptions {
  readonly endpoints: readonly Endpoint[];
  readonly clusterId?: string;
  /** Per call, across redirects and retries. */
  readonly timeoutMs?: number;
  /** Identifies this client in the replay cache; a fresh one per client by default. */
  readonly clientId?: string;
  readonly inflightMax?: number;
  /** A node that has not answered an attempt by then is left for another (see RpcClientOptions). */
  readonly attemptTimeoutMs?: number;
  /** A quiet connection with calls waiting is pinged after this long (see RpcClientOptions). */
  readonly pingIdleMs?: number;
  /** ...and left when no pong comes within this long. */
  readonly pongTimeoutMs?: number;
  /** The clock and timers of its deadlines and heartbeats (a simulator passes a virtual runtime). */
  readonly runtime?: Runtime;
  /** Learn the other members' addresses (default true); see RpcClientOptions.discoverEndpoints. */
  readonly discoverEndpoints?: boolean;
}

export interface ReadOptions {
  /** Serve from any node's applied state, without a ReadIndex round; may be behind. */
  readonly stale?: boolean;
  readonly timeoutMs?: number;
}

export interface ListOptions extends ReadOptions {
  readonly prefix?: string;
  readonly startAfter?: string;
  /** At most 1,000. */
  readonly limit?: number;
}

export interface ListPage<T> {
  readonly items: T[];
  readonly truncated: boolean;
  readonly nextStartAfter?: string;
}

type Reply = Record<string, unknown>;
/** An op's typed reply (src/protocol), still open to the fields the protocol does not name. */
type Typed<O extends Op> = Reply & ReplyOf<O>;

/** Membership changes and leader transfers wait for a commit or an election: a longer attempt. */
export const ADMIN_ATTEMPT_TIMEOUT_MS = 10_000;

/**
 * The TypeScript client: connects to any node, follows NOT_LEADER to the leader, retries a
 * write with the same call id (so the replay cache answers a retry whose first attempt
 * committed), pipelines calls on one connection, and gives every call a deadline.
 */
export class MetaraftClient {
  readonly clientId: string;
  readonly runtime: Runtime;
  readonly #rpc: RpcClient;
  readonly #rpcOptions: RpcClientOptions;
  #callId = 0;
  #keeper: SessionKeeper | undefined;

  constructor(options: ClientOptions) {
    this.clientId = options.clientId ?? randomUUID();
    this.runtime = options.runtime ?? systemRuntime;
    const rpcOptions: RpcClientOptions = {
      endpoints: options.endpoints,
      clusterId: options.clusterId ?? "metaraft-dev",
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      ...(options.inflightMax === undefined ? {} : { inflightMax: options.inflightMax }),
      ...(options.attemptTimeoutMs === undefined ? {} : { attemptTimeoutMs: options.attemptTimeoutMs }),
      ...(options.pingIdleMs === undefined ? {} : { pingIdleMs: options.pingIdleMs }),
      ...(options.pongTimeoutMs === undefined ? {} : { pongTimeoutMs: options.pongTimeoutMs }),
      ...(options.discoverEndpoints === undefined ? {} : { discoverEndpoints: options.discoverEndpoints }),
      runtime: this.runtime,
    };
    this.#rpcOptions = rpcOptions;
    this.#rpc = new RpcClient(rpcOptions);
  }

  /** Any write request by op name; fields as the request spec wants them. */
  write(op: string, fields: Reply, timeoutMs?: number): Promise<Reply> {
    const callId = ++this.#callId;
    return this.#rpc.call(op, { ...fields, clientId: this.clientId, callId }, timeoutMs);
  }

  read(op: string, fields: Reply, options: ReadOptions = {}): Promise<Reply> {
    return this.#rpc.call(op, { ...fields, stale: options.stale === true }, options.timeoutMs);
  }

  createVolume(
    volume: string,
    options: { owner?: string; quotaBytes?: number } = {},
  ): Promise<Typed<"createVolume">> {
    return this.write("createVolume", { volume, ...options }) as Promise<Typed<"createVolume">>;
  }

  deleteVolume(volume: string): Promise<Reply> {
    return this.write("deleteVolume", { volume });
  }

  createBucket(
    volume: string,
    bucket: string,
    options: { versioning?: boolean } = {},
  ): Promise<Typed<"createBucket">> {
    return this.write("createBucket", { volume, bucket, ...options }) as Promise<Typed<"createBucket">>;
  }

  deleteBucket(volume: string, bucket: string): Promise<Reply> {
    return this.write("deleteBucket", { volume, bucket });
  }

  /** Allocates the object id; the returned handle must be committed before it expires. */
  openKey(volume: string, bucket: string, key: string, size = 0): Promise<Typed<"openKey">> {
    return this.write("openKey", { volume, bucket, key, size }) as Promise<Typed<"openKey">>;
  }

  commitKey(
    volume: string,
    bucket: string,
    key: string,
    openKeyId: number,
    info: { size: number; etag: string; metadata?: Record<string, string> },
  ): Promise<Typed<"commitKey">> {
    return this.write("commitKey", { volume, bucket, key, openKeyId, ...info }) as Promise<
      Typed<"commitKey">
    >;
  }

  /** openKey then commitKey: what a `put` of an object does to its metadata. */
  async putKey(
    volume: string,
    bucket: string,
    key: string,
    info: { size: number; etag: string; metadata?: Record<string, string> },
  ): Promise<Typed<"commitKey">> {
    const { openKeyId } = await this.openKey(volume, bucket, key, info.size);
    return this.commitKey(volume, bucket, key, openKeyId, info);
  }

  lookupKey(volume: string, bucket: string, key: string, options?: ReadOptions): Promise<Typed<"lookupKey">> {
    return this.read("lookupKey", { volume, bucket, key }, options) as Promise<Typed<"lookupKey">>;
  }

  deleteKey(volume: string, bucket: string, key: string): Promise<Reply> {
    return this.write("deleteKey", { volume, bucket, key });
  }

  renameKey(volume: string, bucket: string, key: string, toKey: string): Promise<Typed<"renameKey">> {
    return this.write("renameKey", { volume, bucket, key, toKey }) as Promise<Typed<"renameKey">>;
  }

  listVolumes(options: ListOptions = {}): Promise<ListPage<Reply>> {
    return this.read("listVolumes", listFields(options), options) as unknown as Promise<ListPage<Reply>>;
  }

  listBuckets(volume: string, options: ListOptions = {}): Promise<ListPage<Reply>> {
    return this.read("listBuckets", { volume, ...listFields(options) }, options) as unknown as Promise<
      ListPage<Reply>
    >;
  }

  listKeys(volume: string, bucket: string, options: ListOptions = {}): Promise<ListPage<Reply>> {
    return this.read("listKeys", { volume, bucket, ...listFields(options) }, options) as unknown as Promise<
      ListPage<Reply>
    >;
  }

  /**
   * The answering node's status. `eventLoopReset` ends its event-loop window (`eventLoop`, the
   * worst delay since the last reset) and starts a new one: a benchmark resets at the start of a
   * fault and reads the window at its end.
   */
  status(options: { eventLoopReset?: boolean } = {}): Promise<Reply> {
    return this.#rpc.call("status", options.eventLoopReset === true ? { eventLoopReset: true } : {});
  }

  /** The members as the leader sees them (with `stale`, as whichever node answers sees them). */
  memberList(options: ReadOptions = {}): Promise<Reply> {
    return this.#rpc.call("memberList", { stale: options.stale === true }, options.timeoutMs);
  }

  /** Adds a learner; it is promoted by `memberPromote` once it has caught up. */
  memberAdd(node: number, addresses: { peer: string; client: string }): Promise<Reply> {
    return this.#rpc.call("memberAdd", { node, ...addresses }, undefined, ADMIN_ATTEMPT_TIMEOUT_MS);
  }

  memberPromote(node: number): Promise<Reply> {
    return this.#rpc.call("memberPromote", { node }, undefined, ADMIN_ATTEMPT_TIMEOUT_MS);
  }

  memberRemove(node: number): Promise<Reply> {
    return this.#rpc.call("memberRemove", { node }, undefined, ADMIN_ATTEMPT_TIMEOUT_MS);
  }

  leaderTransfer(node: number): Promise<Reply> {
    return this.#rpc.call("leaderTransfer", { node }, undefined, ADMIN_ATTEMPT_TIMEOUT_MS);
  }

  /** Events after `afterTxid` (the ledger's read; `missed` says what was pruned before it). */
  readEvents(
    options: { afterTxid?: number; limit?: number; prefix?: string } & ReadOptions = {},
  ): Promise<ReadEventsReply> {
    const { stale, timeoutMs, ...fields } = options;
    return this.read("readEvents", fields, {
      ...(stale ? { stale } : {}),
      ...(timeoutMs ? { timeoutMs } : {}),
    }) as unknown as Promise<ReadEventsReply>;
  }

  /**
   * Streams the ledger's events under `prefix`, in txid order, from `fromTxid` (or from now) and
   * then as they are applied; resumes on another member after a lost connection with no gap and
   * no duplicate. Each watch has its own connection to any member. See `Watch`.
   */
  watch(options: WatchOptions = {}): Watch {
    return new Watch(new RpcClient(this.#rpcOptions), options);
  }

  /** Every registered listener, and the ledger's summary. */
  listeners(options: ReadOptions = {}): Promise<Reply> {
    return this.read("listeners", {}, options);
  }

  listenerAdd(listener: {
    name: string;
    module: string;
    options?: Record<string, unknown>;
    runner?: "node" | "process";
    enabled?: boolean;
    from?: "now" | "start" | number;
  }): Promise<Reply> {
    return this.write("listenerAdd", listener);
  }

  listenerUpdate(
    name: string,
    change: {
      enabled?: boolean;
      options?: Record<string, unknown>;
      module?: string;
      runner?: "node" | "process";
      restart?: boolean;
    },
  ): Promise<Reply> {
    return this.write("listenerUpdate", { name, ...change });
  }

  listenerRemove(name: string): Promise<Reply> {
    return this.write("listenerRemove", { name });
  }

  /** `listeners ls`: every listener with its state, checkpoint, lag and errors, as the leader sees them. */
  listenerStatus(): Promise<Reply> {
    return this.#rpc.call("listenerStatus", {});
  }

  /** The separate runner's statuses and plugin metrics, for its node to show and report. */
  listenerReport(report: { node: number; statuses: unknown[]; metrics: unknown[] }): Promise<Reply> {
    return this.#rpc.call("listenerReport", report);
  }

  /** The node's metrics and its plugins', as Prometheus text (the node this client reaches first). */
  metrics(): Promise<Reply> {
    return this.#rpc.call("metrics", {});
  }

  /** `service ls`: each service's state on the leader, the node it runs on, its configuration and progress. */
  serviceList(options: ReadOptions = {}): Promise<Reply> {
    return this.#rpc.call("serviceList", { stale: options.stale === true }, options.timeoutMs);
  }

  serviceGet(name: string, options: ReadOptions = {}): Promise<Reply> {
    return this.read("serviceConfigGet", { name }, options);
  }

  /** Sets a service's configuration (checked by the service), or `shouldRun` (`service start|stop`). */
  serviceSet(name: string, change: { config?: unknown; shouldRun?: boolean }): Promise<Reply> {
    return this.write("serviceConfigSet", { name, ...change });
  }

  serviceDelete(name: string): Promise<Reply> {
    return this.write("serviceConfigDelete", { name });
  }

  listenerCheckpoint(name: string, txid: number): Promise<Reply> {
    return this.write("listenerCheckpoint", { name, txid });
  }

  /**
   * Appends events (bytes, or strings as UTF-8) to a durable queue, in order; resolves with the
   * first event's offset and the queue's outstanding bytes. MR_ERR_QUEUE_FULL when it is full.
   */
  queueAdd(queue: string, events: Uint8Array | string | readonly (Uint8Array | string)[]): Promise<Reply> {
    const list = typeof events === "string" || events instanceof Uint8Array ? [events] : events;
    return this.write("queueAdd", {
      queue,
      events: list.map((e) => (typeof e === "string" ? Buffer.from(e, "utf8") : e)),
    });
  }

  /** Creates a queue, or changes its maxOutstandingBytes (a consumer does this when its node leads). */
  queueRegister(
    queue: string,
    limits: { maxOutstandingBytes: number; segmentBytes: number },
  ): Promise<Reply> {
    return this.write("queueRegister", { queue, ...limits });
  }

  /** Every queue's replicated state (offsets, outstanding bytes, segments, dead letters). */
  queues(options: ReadOptions = {}): Promise<Reply> {
    return this.read("queues", {}, options);
  }

  /** `queue ls`: every queue with its tail's progress, latency and state, as the leader sees them. */
  queueStatus(): Promise<Reply> {
    return this.#rpc.call("queueStatus", {});
  }

  /** A queue's dead letters, oldest first: each event with its error and attempts. */
  queueDeadLetters(
    queue: string,
    options: { afterOffset?: number; limit?: number } & ReadOptions = {},
  ): Promise<Reply> {
    const { stale, timeoutMs, ...fields } = options;
    return this.read(
      "queueDeadLetters",
      { queue, ...fields },
      { ...(stale ? { stale } : {}), ...(timeoutMs ? { timeoutMs } : {}) },
    );
  }

  /** Appends up to `limit` dead letters to the queue's end again; `deadLetters` says how many are left. */
  queueRetryDeadLetters(queue: string, options: { limit?: number } = {}): Promise<Reply> {
    return this.write("queueRetryDeadLetters", { queue, ...options });
  }

  /** Deletes up to `limit` dead letters; `deadLetters` says how many are left. */
  queuePurgeDeadLetters(queue: string, options: { limit?: number } = {}): Promise<Reply> {
    return this.write("queuePurgeDeadLetters", { queue, ...options });
  }

  /**
   * Puts a coordination key; `prevKv` asks for the entry it replaced. With `session` (a
   * `Session` or its id) the entry is ephemeral: it goes when the session ends. Replies
   * `{ txid, prevKv? }`; MR_ERR_SESSION_EXPIRED if the session has ended.
   */
  kvPut(
    key: string,
    value: string | Uint8Array,
    options: { prevKv?: boolean; session?: Session | number } = {},
  ): Promise<Reply> {
    const session = typeof options.session === "object" ? options.session.id : options.session;
    return this.write("kvPut", {
      key,
      value,
      ...(options.prevKv ? { prevKv: true } : {}),
      ...(session === undefined ? {} : { session }),
    });
  }

  /**
   * Opens a session with a TTL (2 s up to the cluster's session.ttlMaxMs) and heartbeats it every
   * TTL/3 with this client's other sessions, in one message, until it is closed or expires.
   */
  async createSession(options: { ttlMs: number }): Promise<Session> {
    const reply = await this.write("sessionCreate", { ttlMs: options.ttlMs });
    this.#keeper ??= new SessionKeeper(
      {
        keepAlive: (ids, timeoutMs) =>
          this.keepAlive(ids, timeoutMs) as Promise<{
            expired: readonly number[];
            expiring?: readonly number[];
          }>,
        close: (id) => this.write("sessionClose", { sessionId: id }),
      },
      this.runtime,
    );
    const session = new Session(
      reply.sessionId as number,
      reply.ttlMs as number,
      this.#keeper,
      this.runtime.now(),
    );
    this.#keeper.add(session);
    return session;
  }

  /**
   * One heartbeat message for many sessions (what `createSession` sends for you). Replies
   * `{ expired: ids }`: the ids the leader holds no live session for.
   */
  keepAlive(ids: readonly number[], timeoutMs?: number): Promise<Reply> {
    return this.#rpc.call("sessionKeepAlive", { ids }, timeoutMs, timeoutMs);
  }

  /** Closes a session by id: its ephemeral entries are deleted at once. */
  closeSession(id: number): Promise<Reply> {
    return this.write("sessionClose", { sessionId: id });
  }

  /** A session's record and ephemeral keys (`session`), or how it ended (`ended`). */
  sessionGet(id: number, options: ReadOptions = {}): Promise<Reply> {
    return this.read("sessionGet", { sessionId: id }, options);
  }

  /** Open sessions (or with `ended`, the last ones that ended), in id order. */
  sessionList(
    options: ReadOptions & { ended?: boolean; startAfter?: number; limit?: number } = {},
  ): Promise<Reply> {
    const { stale, timeoutMs, ...page } = options;
    return this.read("sessionList", page, {
      ...(stale ? { stale } : {}),
      ...(timeoutMs ? { timeoutMs } : {}),
    });
  }

  /** The leader's view of live sessions: remaining TTL and heartbeat age (`ids` to pick some). */
  sessionStatus(ids?: readonly number[]): Promise<Reply> {
    return this.#rpc.call("sessionStatus", ids ? { ids } : {});
  }

  /** A coordination key's entry `{ key, value, createTxid, modTxid, version }`, or `kv: null`. */
  kvGet(key: string, options: ReadOptions = {}): Promise<Reply> {
    return this.read("kvGet", { key }, options);
  }

  /**
   * Deletes a key, or with `prefix` the keys under it, at most `kv.deleteKeysMax` of them: the
   * reply's `truncated` says keys remain. Replies `{ txid, deleted, truncated, prevKvs? }`.
   */
  kvDelete(key: string, options: { prefix?: boolean; prevKv?: boolean } = {}): Promise<Reply> {
    return this.write("kvDelete", {
      key,
      ...(options.prefix ? { prefix: true } : {}),
      ...(options.prevKv ? { prevKv: true } : {}),
    });
  }

  /** The entries under `prefix`, in key order (UTF-8 bytes): `{ items, truncated, nextStartAfter? }`. */
  kvRange(prefix: string, options: Omit<ListOptions, "prefix"> = {}): Promise<Reply> {
    const { stale, timeoutMs, ...page } = options;
    return this.read(
      "kvRange",
      { ...listFields({ ...page, prefix }) },
      { ...(stale ? { stale } : {}), ...(timeoutMs ? { timeoutMs } : {}) },
    );
  }

  /**
   * etcd's txn: when every compare holds (against the state before the txn), runs `success`,
   * else `failure`, atomically. Replies `{ txid, succeeded, responses }`.
   */
  kvTxn(txn: {
    compare?: readonly Reply[];
    success?: readonly Reply[];
    failure?: readonly Reply[];
  }): Promise<Reply> {
    return this.write("kvTxn", {
      compare: txn.compare ?? [],
      success: txn.success ?? [],
      failure: txn.failure ?? [],
    });
  }

  close(): void {
    this.#keeper?.close();
    this.#rpc.close();
  }
}

function listFields(options: ListOptions): Reply {
  return {
    ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
    ...(options.startAfter === undefined ? {} : { startAfter: options.startAfter }),
    ...(options.limit === undefined ? {} : { limit: options.limit }),
  };
}
