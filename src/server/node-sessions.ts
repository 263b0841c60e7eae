import { randomUUID } from "node:crypto";
import { Gauge, Registry } from "prom-client";
import { RpcClient } from "../client/rpc-client.js";
import { type SessionId, SessionTracker } from "../coordination/index.js";
import { MetaraftError } from "../errors.js";
import type { WritePipeline } from "../execution/pipeline.js";
import type { StateReader } from "../execution/types.js";
import type { Leadership } from "../host/index.js";
import type { NodeId } from "../raft/index.js";
import type { Runtime } from "../runtime.js";
import type { Settings } from "../settings.js";

/** Session ids one heartbeat message carries at most (100k ids are about 1 MiB of MessagePack). */
export const KEEPALIVE_IDS_MAX = 100_000;
/** Heartbeat messages a follower has forwarded to the leader and not yet had answered. */
export const KEEPALIVE_FORWARD_INFLIGHT_MAX = 256;
/** A forwarded heartbeat that the leader has not answered by then fails; the client retries. */
export const KEEPALIVE_FORWARD_TIMEOUT_MS = 2_000;

function checkIds(raw: Record<string, unknown>): SessionId[] {
  const ids = raw.ids;
  if (!Array.isArray(ids) || ids.length > KEEPALIVE_IDS_MAX) {
    throw new MetaraftError(
      "MR_ERR_INVALID_ARGUMENT",
      `ids must be a list of at most ${KEEPALIVE_IDS_MAX} session ids`,
    );
  }
  for (const id of ids) {
    if (!Number.isSafeInteger(id) || id < 1) {
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "ids must hold session ids (positive integers)");
    }
  }
  return ids as SessionId[];
}

/** The connection heartbeats are forwarded on, to the leader at `address`. */
interface Forward {
  readonly address: string;
  readonly client: RpcClient;
  /**
   * Rejects once this forward is dropped (a new leader, or none known). A closed RpcClient still
   * retries the calls it has in flight until their deadline, against the old leader's address:
   * after a kill -9 of the leader, every heartbeat forwarded to it would hang for
   * KEEPALIVE_FORWARD_TIMEOUT_MS although a new leader was elected long before.
   */
  readonly dropped: Promise<never>;
  readonly drop: (error: MetaraftError) => void;
}

/**
 * A node's part in sessions: on the ready leader the tracker of their heartbeats and expiry;
 * on a follower, the forwarding of heartbeats to the leader (over the leader's client port),
 * so that a client connected anywhere keeps its sessions without writing to the log.
 */
export class NodeSessions {
  readonly tracker: SessionTracker;
  /** Prometheus metrics (`metaraft metrics`); counters are this node's since it last took over. */
  readonly metrics = new Registry();
  readonly #nodeId: NodeId;
  readonly #leadership: Leadership;
  readonly #clusterId: string;
  readonly #leaderClient: () => string | undefined;
  #forward: Forward | undefined;
  #forwarding = 0;
  readonly #unsubscribe: () => void;

  constructor(parts: {
    nodeId: NodeId;
    clusterId: string;
    store: StateReader;
    pipeline: WritePipeline;
    leadership: Leadership;
    runtime: Runtime;
    settings: Settings["session"];
    graceMs: number;
    /** The leader's client address, if known. */
    leaderClient: () => string | undefined;
  }) {
    this.#nodeId = parts.nodeId;
    this.#leadership = parts.leadership;
    this.#clusterId = parts.clusterId;
    this.#leaderClient = parts.leaderClient;
    const clientId = `sessions-${randomUUID()}`;
    let callId = 0;
    this.tracker = new SessionTracker({
      leadership: parts.leadership,
      runtime: parts.runtime,
      store: parts.store,
      submit: (request) => parts.pipeline.submit(clientId, callId++, request),
      expiryCheckMs: parts.settings.expiryCheckMs,
      checkpointMs: parts.settings.checkpointMs,
      graceMs: parts.graceMs,
    });
    const tracker = this.tracker;
    const gauge = (name: string, help: string, value: () => number) =>
      new Gauge({
        name,
        help,
        registers: [this.metrics],
        collect() {
          this.set(value());
        },
      });
    gauge(
      "metaraft_sessions_tracked",
      "live sessions this node tracks (the ready leader: all of them)",
      () => tracker.size,
    );
    gauge(
      "metaraft_session_heartbeats",
      "session heartbeats this leader took",
      () => tracker.stats.heartbeats,
    );
    gauge(
      "metaraft_session_keepalive_messages",
      "heartbeat messages this leader took",
      () => tracker.stats.keepAliveMessages,
    );
    gauge("metaraft_sessions_expired", "sessions this leader expired", () => tracker.stats.expired);
    gauge(
      "metaraft_session_checkpoints",
      "remaining TTLs this leader checkpointed",
      () => tracker.stats.checkpointed,
    );
    gauge(
      "metaraft_session_forwarding",
      "heartbeat messages this follower is forwarding to the leader",
      () => this.#forwarding,
    );
    // A new leader: the old forwarding connection points at the wrong node.
    this.#unsubscribe = parts.leadership.subscribe({ leaderChanged: () => this.#dropForward() });
  }

  /** Tells the tracker of the creates and closes this leader commits. */
  observe(raw: Record<string, unknown>, reply: Promise<Record<string, unknown>>): void {
    if (raw.op === "sessionCreate") {
      reply.then(
        (r) => this.tracker.created(r.sessionId as SessionId, r.ttlMs as number),
        () => undefined,
      );
    } else if (raw.op === "sessionClose") {
      const id = raw.sessionId as SessionId;
      reply.then(
        () => this.tracker.closed(id),
        () => undefined,
      );
    }
  }

  /** `sessionKeepAlive`: served by the ready leader, forwarded by a follower (once: never onward). */
  async keepAlive(raw: Record<string, unknown>): Promise<Record<string, unknown>> {
    const ids = checkIds(raw);
    if (this.#leadership.ready) return { ...this.tracker.keepAlive(ids), leader: this.#nodeId };
    const leader = this.#leadership.state.leader;
    if (raw.forwarded === true || leader === 0 || leader === this.#nodeId) {
      throw new MetaraftError(
        leader === this.#nodeId ? "MR_ERR_NOT_READY" : "MR_ERR_NOT_LEADER",
        leader === this.#nodeId ? "the leader is applying the entries before its term" : undefined,
        { details: { leader } },
      );
    }
    const address = this.#leaderClient();
    if (!address) throw new MetaraftError("MR_ERR_NOT_LEADER", undefined, { details: { leader } });
    if (this.#forwarding >= KEEPALIVE_FORWARD_INFLIGHT_MAX) {
      throw new MetaraftError(
        "MR_ERR_UNAVAILABLE",
        `${KEEPALIVE_FORWARD_INFLIGHT_MAX} heartbeat messages are being forwarded to the leader: send heartbeats to it directly`,
      );
    }
    const forward = this.#forwardTo(address);
    this.#forwarding++;
    try {
      return await Promise.race([
        forward.client.call("sessionKeepAlive", { ids, forwarded: true }, KEEPALIVE_FORWARD_TIMEOUT_MS),
        forward.dropped,
      ]);
    } finally {
      this.#forwarding--;
    }
  }

  /** `sessionStatus` (the ready leader): live sessions' remaining TTL and heartbeat age. */
  status(raw: Record<string, unknown>): Record<string, unknown> {
    const ids = raw.ids === undefined || raw.ids === null ? undefined : checkIds(raw);
    return { from: this.#nodeId, sessions: this.tracker.liveness(ids), stats: this.tracker.stats };
  }

  #forwardTo(address: string): Forward {
    if (this.#forward?.address !== address) {
      this.#dropForward();
      const at = address.lastIndexOf(":");
      let drop: (error: MetaraftError) => void = () => {};
      const dropped = new Promise<never>((_, reject) => {
        drop = reject;
      });
      // Nobody may be waiting when it is dropped.
      dropped.catch(() => undefined);
      this.#forward = {
        address,
        client: new RpcClient({
          endpoints: [{ host: address.slice(0, at), port: Number(address.slice(at + 1)) }],
          clusterId: this.#clusterId,
          timeoutMs: KEEPALIVE_FORWARD_TIMEOUT_MS,
        }),
        dropped,
        drop,
      };
    }
    return this.#forward;
  }

  /** Closes the forwarding connection; the heartbeats in flight on it fail now, naming the leader. */
  #dropForward(): void {
    const forward = this.#forward;
    if (!forward) return;
    this.#forward = undefined;
    forward.client.close();
    const leader = this.#leadership.state.leader;
    // This node leads now: the client stays and retries here once it is ready.
    forward.drop(
      leader === this.#nodeId
        ? new MetaraftError(
            "MR_ERR_NOT_READY",
            "this node became the leader while the heartbeat was forwarded",
            {
              details: { leader },
            },
          )
        : new MetaraftError("MR_ERR_NOT_LEADER", undefined, { details: { leader } }),
    );
  }

  close(): void {
    this.#unsubscribe();
    this.#dropForward();
    this.tracker.close();
  }
}
