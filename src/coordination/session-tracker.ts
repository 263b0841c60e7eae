import { MetaraftError } from "../errors.js";
import type { Request, StateReader } from "../execution/types.js";
import type { Leadership } from "../host/index.js";
import type { Runtime, Timer } from "../runtime.js";
import type { SessionId } from "./session-records.js";
import { allSessions, SESSION_BATCH_MAX } from "./sessions.js";

/**
 * The leader's view of the sessions' liveness (DESIGN.md, "Sessions and the control plane").
 * Heartbeats only move a deadline in memory here: they never reach the log, so a million
 * heartbeats a minute cost the cluster no writes. What does reach the log:
 * - the sessions past their deadline, in one `sessionExpire` entry per check (at most
 *   `SESSION_BATCH_MAX` sessions each, so a mass expiry spreads over a few entries);
 * - for sessions whose TTL is longer than `checkpointMs`, now and then the TTL they have left
 *   while they do not heartbeat (`sessionCheckpoint`), so that leader changes, each of which
 *   grants every session its recorded remaining TTL plus the grace, cannot keep a dead session
 *   alive for ever (etcd's lease checkpoints, after etcd #9888).
 *
 * A new ready leader starts every session at its recorded remaining TTL plus `graceMs` (the
 * election timeout): the clients need that long to find the new leader, so a failover expires
 * nobody. Deadlines are on the monotonic clock (`runtime.elapsed`); wall time only stamps
 * tombstones.
 */

/** Sessions `liveness()` lists at most when not asked for given ids. */
export const SESSION_LIVENESS_ROWS_MAX = 1_000;

export interface SessionTrackerOptions {
  readonly leadership: Leadership;
  readonly runtime: Runtime;
  /** Committed state: read once per leadership, when this node becomes the ready leader. */
  readonly store: StateReader;
  /** Sends the tracker's own requests through the write path. */
  readonly submit: (request: Request) => Promise<Record<string, unknown>>;
  readonly expiryCheckMs: number;
  readonly checkpointMs: number;
  /** What a new leader adds to every session's remaining TTL: the election timeout. */
  readonly graceMs: number;
}

interface Live {
  readonly ttlMs: number;
  /** Monotonic ms: the session expires once this passes without a heartbeat. */
  deadline: number;
  /** Monotonic ms of its last heartbeat here; undefined until the first under this leader. */
  lastHeartbeat: number | undefined;
  /** The remaining TTL its record holds (what a new leader would grant, before the grace). */
  recordedMs: number;
  /** Its deadline includes the grace (no heartbeat yet under this leader). */
  graced: boolean;
}

export interface SessionLiveness {
  readonly id: SessionId;
  readonly ttlMs: number;
  /** Milliseconds until it expires without a heartbeat. */
  readonly remainingMs: number;
  /** Milliseconds since its last heartbeat reached this leader; null if none has since it took over. */
  readonly lastHeartbeatAgeMs: number | null;
}

export interface KeepAliveResult {
  /** Ids this leader holds no live session for (expired or closed). */
  readonly expired: readonly SessionId[];
  /**
   * Ids whose expiry this leader has proposed and not yet seen applied: not acknowledged, and
   * not yet told expired either, since a leader change may lose the proposal and the next
   * leader keep the session. Absent when none.
   */
  readonly expiring?: readonly SessionId[];
}

export class SessionTracker {
  readonly #options: SessionTrackerOptions;
  readonly #live = new Map<SessionId, Live>();
  /** Sent to expire and not yet applied: a heartbeat for one is not acknowledged. */
  readonly #expiring = new Set<SessionId>();
  #ready = false;
  /** Bumped at each leadership change, so that a reply from an earlier one changes nothing. */
  #epoch = 0;
  #expiryInFlight = false;
  #checkpointInFlight = false;
  #timers: Timer[] = [];
  readonly #unsubscribe: () => void;
  /** Counters for status and benchmarks. */
  readonly stats = { heartbeats: 0, keepAliveMessages: 0, expired: 0, checkpointed: 0, expiryEntries: 0 };

  constructor(options: SessionTrackerOptions) {
    this.#options = options;
    this.#unsubscribe = options.leadership.subscribe({
      leaderReady: () => this.#takeOver(),
      notLeader: () => this.#stepDown(),
    });
    if (options.leadership.ready) this.#takeOver();
  }

  get ready(): boolean {
    return this.#ready;
  }

  get size(): number {
    return this.#live.size;
  }

  #takeOver(): void {
    this.#stepDown();
    this.#ready = true;
    const now = this.#options.runtime.elapsed();
    // Every entry before this term's no-op is applied: the store holds every session there is.
    for (const s of allSessions(this.#options.store)) {
      this.#live.set(s.id, {
        ttlMs: s.ttlMs,
        deadline: now + s.remainingMs + this.#options.graceMs,
        lastHeartbeat: undefined,
        recordedMs: s.remainingMs,
        graced: true,
      });
    }
    const { runtime, expiryCheckMs, checkpointMs } = this.#options;
    this.#timers = [
      runtime.every(expiryCheckMs, () => this.checkExpiry()).unref(),
      runtime.every(checkpointMs, () => this.checkpoint()).unref(),
    ];
  }

  #stepDown(): void {
    this.#ready = false;
    this.#epoch++;
    for (const timer of this.#timers) timer.cancel();
    this.#timers = [];
    this.#live.clear();
    this.#expiring.clear();
    this.#expiryInFlight = false;
    this.#checkpointInFlight = false;
  }

  #checkReady(): void {
    if (!this.#options.leadership.ready || !this.#ready) {
      throw new MetaraftError(
        "MR_ERR_NOT_READY",
        "this node is not the ready leader: it does not track sessions",
      );
    }
  }

  /** A create committed under this leader. */
  created(id: SessionId, ttlMs: number): void {
    if (!this.#ready || this.#live.has(id)) return;
    const now = this.#options.runtime.elapsed();
    this.#live.set(id, {
      ttlMs,
      deadline: now + ttlMs,
      lastHeartbeat: now,
      recordedMs: ttlMs,
      graced: false,
    });
  }

  /** A close committed under this leader. */
  closed(id: SessionId): void {
    this.#live.delete(id);
    this.#expiring.delete(id);
  }

  /** One message's heartbeats: each live session's deadline moves to now plus its TTL. */
  keepAlive(ids: readonly SessionId[]): KeepAliveResult {
    this.#checkReady();
    this.stats.keepAliveMessages++;
    const now = this.#options.runtime.elapsed();
    const expired: SessionId[] = [];
    let expiring: SessionId[] | undefined;
    for (const id of ids) {
      const live = this.#live.get(id);
      if (!live) {
        expired.push(id);
        continue;
      }
      if (this.#expiring.has(id)) {
        (expiring ??= []).push(id);
        continue;
      }
      live.deadline = now + live.ttlMs;
      live.lastHeartbeat = now;
      live.graced = false;
      this.stats.heartbeats++;
    }
    return expiring ? { expired, expiring } : { expired };
  }

  /** Live sessions' liveness, for `session ls` and `agents ls`: the given ids', or the first `SESSION_LIVENESS_ROWS_MAX`. */
  liveness(ids?: readonly SessionId[]): SessionLiveness[] {
    this.#checkReady();
    const now = this.#options.runtime.elapsed();
    const out: SessionLiveness[] = [];
    const one = (id: SessionId, live: Live) =>
      out.push({
        id,
        ttlMs: live.ttlMs,
        remainingMs: Math.max(0, Math.round(live.deadline - now)),
        lastHeartbeatAgeMs: live.lastHeartbeat === undefined ? null : Math.round(now - live.lastHeartbeat),
      });
    if (ids) {
      for (const id of ids) {
        const live = this.#live.get(id);
        if (live && !this.#expiring.has(id)) one(id, live);
      }
    } else {
      // A reply stays small: ask by ids (at most a heartbeat's worth) for more.
      for (const [id, live] of this.#live) {
        if (out.length >= SESSION_LIVENESS_ROWS_MAX) break;
        if (!this.#expiring.has(id)) one(id, live);
      }
    }
    return out;
  }

  /**
   * Proposes the expiry of the sessions past their deadline (one entry in flight at a time).
   *
   * Measured and kept over two alternatives (bench:sessions at 100k sessions, A B A B in one
   * run): a deadline wheel instead of this scan cost the idle leader more (9.0 and 12.2% of a
   * core against 7.7 and 8.0%: moving each heartbeat between slots costs more than a 0.6 ms
   * scan every 100 ms), and four entries in flight made a mass expiry slower (gone 19.3 and
   * 7.7 s past the TTL against 2.6 and 3.0 s: each entry's scans walk the overlay of the
   * others).
   */
  checkExpiry(): void {
    if (!this.#ready || this.#expiryInFlight) return;
    const { runtime } = this.#options;
    const now = runtime.elapsed();
    const wall = runtime.now();
    const items: [SessionId, number][] = [];
    for (const [id, live] of this.#live) {
      if (live.deadline > now || this.#expiring.has(id)) continue;
      const lastHeartbeatAt =
        live.lastHeartbeat === undefined ? 0 : Math.round(wall - (now - live.lastHeartbeat));
      items.push([id, lastHeartbeatAt]);
      if (items.length >= SESSION_BATCH_MAX) break;
    }
    if (items.length === 0) return;
    for (const [id] of items) this.#expiring.add(id);
    this.#expiryInFlight = true;
    const epoch = this.#epoch;
    this.#options.submit({ op: "sessionExpire", items }).then(
      (reply) => {
        if (epoch !== this.#epoch) return;
        this.#expiryInFlight = false;
        this.stats.expiryEntries++;
        for (const id of [...(reply.expired as SessionId[]), ...(reply.gone as SessionId[])]) {
          this.#live.delete(id);
          this.#expiring.delete(id);
          this.stats.expired++;
        }
        // Past the entry's key bound: they go in the next one, at once.
        for (const id of reply.deferred as SessionId[]) this.#expiring.delete(id);
        if ((reply.deferred as SessionId[]).length > 0 || items.length >= SESSION_BATCH_MAX) {
          runtime.defer(() => this.checkExpiry());
        }
      },
      () => {
        if (epoch !== this.#epoch) return;
        // Not committed here (leadership lost, a full queue): still past their deadline, so the
        // next check sends them again (a heartbeat in between was not acknowledged).
        this.#expiryInFlight = false;
        for (const [id] of items) this.#expiring.delete(id);
      },
    );
  }

  /**
   * Records the remaining TTL of long-TTL sessions that have gone quiet (no heartbeat for half
   * their TTL, or none yet under this leader), and restores the full TTL of one that came back.
   * Heartbeating sessions whose record is whole cost nothing.
   *
   * The record is pessimistic by one interval: it holds what the session will have left at the
   * next checkpoint. So whenever this leader goes, the record is at most what the session really
   * has left, and the next leader grants no time already spent: however many leader changes
   * come, a dead session lives at most its TTL plus one grace (plus any election longer than an
   * interval). Recording only what is left now would give every leader change back the time
   * since the last checkpoint, up to an interval each, without bound.
   */
  checkpoint(): void {
    if (!this.#ready || this.#checkpointInFlight) return;
    const { runtime, checkpointMs, graceMs } = this.#options;
    const now = runtime.elapsed();
    const items: [SessionId, number][] = [];
    for (const [id, live] of this.#live) {
      if (live.ttlMs <= checkpointMs || this.#expiring.has(id)) continue;
      const quiet = live.lastHeartbeat === undefined || now - live.lastHeartbeat > live.ttlMs / 2;
      let remaining: number;
      if (quiet) {
        // The grace is this leader's gift, not time the session has earned: it is not recorded.
        remaining = Math.round(
          Math.min(live.ttlMs, Math.max(0, live.deadline - now - (live.graced ? graceMs : 0) - checkpointMs)),
        );
        if (remaining >= live.recordedMs) continue;
      } else {
        if (live.recordedMs >= live.ttlMs - checkpointMs / 2) continue;
        remaining = live.ttlMs;
      }
      items.push([id, remaining]);
      if (items.length >= SESSION_BATCH_MAX) break;
    }
    if (items.length === 0) return;
    this.#checkpointInFlight = true;
    const epoch = this.#epoch;
    this.#options.submit({ op: "sessionCheckpoint", items }).then(
      () => {
        if (epoch !== this.#epoch) return;
        this.#checkpointInFlight = false;
        this.stats.checkpointed += items.length;
        for (const [id, remaining] of items) {
          const live = this.#live.get(id);
          if (live) live.recordedMs = remaining;
        }
        if (items.length >= SESSION_BATCH_MAX) runtime.defer(() => this.checkpoint());
      },
      () => {
        if (epoch === this.#epoch) this.#checkpointInFlight = false;
      },
    );
  }

  close(): void {
    this.#stepDown();
    this.#unsubscribe();
  }
}
