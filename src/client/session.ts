import { EventEmitter } from "node:events";
import { MetaraftError } from "../errors.js";
import type { Runtime, Timer } from "../runtime.js";

/**
 * Client sessions (ZooKeeper's sessions, etcd's leases): a session is created through Raft with
 * a TTL; the client then heartbeats it every TTL/3, and all the sessions of one client share one
 * heartbeat message. Heartbeats never reach the log. A session that misses its TTL is expired by
 * the leader, which deletes its ephemeral entries; the client learns it at its next heartbeat
 * or call (MR_ERR_SESSION_EXPIRED), never by silence.
 */

export type SessionState = "alive" | "expired" | "closed";

/** How the keeper reaches the cluster: the client's calls. */
export interface KeepAliveTransport {
  keepAlive(
    ids: readonly number[],
    timeoutMs: number,
  ): Promise<{ expired: readonly number[]; expiring?: readonly number[] }>;
  close(id: number): Promise<unknown>;
}

/** After a failed heartbeat the next is sent this soon (the new leader's grace is about a second). */
export const KEEPALIVE_RETRY_MS = 200;

/**
 * One session. Events: `expired` (a MetaraftError MR_ERR_SESSION_EXPIRED) once the cluster
 * says the session is gone; `disconnected` when a heartbeat fails after a success, and
 * `reconnected` when one succeeds again.
 */
export class Session extends EventEmitter {
  readonly id: number;
  readonly ttlMs: number;
  #state: SessionState = "alive";
  #lastHeartbeatAt: number;
  readonly #keeper: SessionKeeper;
  /** Settles once the session ends (expired or closed), with the reason. */
  readonly ended: Promise<MetaraftError | undefined>;
  #end!: (reason: MetaraftError | undefined) => void;

  constructor(id: number, ttlMs: number, keeper: SessionKeeper, now: number) {
    super();
    this.id = id;
    this.ttlMs = ttlMs;
    this.#keeper = keeper;
    this.#lastHeartbeatAt = now;
    this.ended = new Promise((resolve) => {
      this.#end = resolve;
    });
  }

  get state(): SessionState {
    return this.#state;
  }

  /** When the cluster last acknowledged its heartbeat (or its create), ms since the epoch. */
  get lastHeartbeatAt(): number {
    return this.#lastHeartbeatAt;
  }

  /** @internal */
  acknowledged(at: number): void {
    this.#lastHeartbeatAt = at;
  }

  /** @internal */
  expire(): void {
    if (this.#state !== "alive") return;
    this.#state = "expired";
    this.#keeper.remove(this);
    const error = new MetaraftError("MR_ERR_SESSION_EXPIRED", `session ${this.id} has expired`, {
      details: { sessionId: this.id },
    });
    this.#end(error);
    if (this.listenerCount("expired") > 0) this.emit("expired", error);
  }

  /** Ends the session now: its ephemeral entries are deleted at once. */
  async close(): Promise<void> {
    if (this.#state !== "alive") return;
    this.#state = "closed";
    this.#keeper.remove(this);
    this.#end(undefined);
    try {
      await this.#keeper.transport.close(this.id);
    } catch (error) {
      // Already gone: the end the caller wanted.
      if (!(error instanceof MetaraftError && error.code === "MR_ERR_SESSION_EXPIRED")) throw error;
    }
  }
}

/** Heartbeats every session of one client in one message, every (shortest TTL)/3. */
export class SessionKeeper {
  readonly transport: KeepAliveTransport;
  readonly #runtime: Runtime;
  readonly #sessions = new Map<number, Session>();
  #timer: Timer | undefined;
  #sending = false;
  #failing = false;
  #closed = false;

  constructor(transport: KeepAliveTransport, runtime: Runtime) {
    this.transport = transport;
    this.#runtime = runtime;
  }

  add(session: Session): void {
    this.#sessions.set(session.id, session);
    this.#schedule();
  }

  remove(session: Session): void {
    this.#sessions.delete(session.id);
    if (this.#sessions.size === 0) this.#stop();
  }

  #interval(): number {
    let ttl = Number.POSITIVE_INFINITY;
    for (const s of this.#sessions.values()) ttl = Math.min(ttl, s.ttlMs);
    return Math.max(100, Math.floor(ttl / 3));
  }

  #schedule(delay = this.#interval()): void {
    if (this.#closed || this.#sessions.size === 0) return;
    this.#timer?.cancel();
    this.#timer = this.#runtime
      .after(delay, () => {
        this.#timer = undefined;
        void this.beat();
      })
      .unref();
  }

  #stop(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  /** Sends one heartbeat for every session now (also on the timer). */
  async beat(): Promise<void> {
    if (this.#sending || this.#closed || this.#sessions.size === 0) return;
    this.#sending = true;
    const sessions = [...this.#sessions.values()];
    const interval = this.#interval();
    try {
      const reply = await this.transport.keepAlive(
        sessions.map((s) => s.id),
        interval,
      );
      const at = this.#runtime.now();
      const expired = new Set(reply.expired);
      // Being expired by the leader: not acknowledged; the next heartbeat says how it ended.
      const expiring = new Set(reply.expiring ?? []);
      for (const s of sessions) {
        if (expired.has(s.id)) s.expire();
        else if (!expiring.has(s.id)) s.acknowledged(at);
      }
      if (this.#failing) {
        this.#failing = false;
        for (const s of this.#sessions.values()) s.emit("reconnected");
      }
      this.#sending = false;
      this.#schedule(interval);
    } catch (error) {
      this.#sending = false;
      if (!this.#failing) {
        this.#failing = true;
        for (const s of this.#sessions.values())
          if (s.listenerCount("disconnected") > 0) s.emit("disconnected", error);
      }
      this.#schedule(Math.min(interval, KEEPALIVE_RETRY_MS));
    }
  }

  close(): void {
    this.#closed = true;
    this.#stop();
  }
}
