import { MetaraftError } from "../errors.js";
import type { LedgerEvent } from "../events/index.js";
import type { MetaraftClient } from "./client.js";
import type { Session } from "./session.js";

type Reply = Record<string, unknown>;

/**
 * Locks and leader election over the coordination keyspace, as etcd's concurrency package
 * (Mutex, Election) and ZooKeeper's lock recipe build them. Each contender puts a key of its own
 * under the lock's prefix, ephemeral to its session, and the contender whose key was created
 * first holds the lock. Every other one waits for the deletion of the one key created just
 * before its own, never for all of them, so the holder's release wakes one waiter, not a herd.
 * A holder whose session ends (closed, or expired: its process died or was cut off past its TTL)
 * loses the lock with its key, and the next contender takes it.
 *
 * The holder's key's create txid is its fencing token. Tokens only grow from one holder to the
 * next, so a store that keeps the largest token it has seen can refuse a late write from an old
 * holder that was paused past its TTL. Inside metaraft, a txn comparing `create(key) = token`
 * does the same (`Mutex.guard`).
 */

export const LOCK_DEFAULTS = {
  /** Contenders of one lock at most: each wait reads them all to find its predecessor. */
  contendersMax: 10_000,
  /** Entries per page of that read. */
  pageEntries: 1_000,
} as const;

export interface LockOptions {
  /** Aborts the wait: the contender's key is deleted and the call fails with MR_ERR_CANCELLED. */
  readonly signal?: AbortSignal;
}

/** A contender's key under the lock's prefix: its value and its create txid (the token). */
export interface Contender {
  readonly key: string;
  readonly value: string | Uint8Array;
  readonly token: number;
  readonly session: number;
}

/** The contenders under `prefix`, oldest first, and the txid the read saw. */
export async function readContenders(
  client: MetaraftClient,
  prefix: string,
  contendersMax: number = LOCK_DEFAULTS.contendersMax,
): Promise<{ contenders: Contender[]; appliedTxid: number }> {
  const contenders: Contender[] = [];
  let appliedTxid = Number.POSITIVE_INFINITY;
  let startAfter: string | undefined;
  for (;;) {
    const page = await client.kvRange(prefix, {
      limit: LOCK_DEFAULTS.pageEntries,
      ...(startAfter === undefined ? {} : { startAfter }),
    });
    appliedTxid = Math.min(appliedTxid, page.appliedTxid as number);
    for (const item of page.items as (Reply & { key: string; value: string | Uint8Array })[]) {
      contenders.push({
        key: item.key,
        value: item.value,
        token: item.createTxid as number,
        session: (item.session as number | undefined) ?? 0,
      });
    }
    if (contenders.length > contendersMax) {
      throw new MetaraftError(
        "MR_ERR_LOCK_CONTENDED",
        `more than ${contendersMax} contenders under ${JSON.stringify(prefix)}`,
        { details: { prefix, contendersMax } },
      );
    }
    if (page.truncated !== true) break;
    startAfter = page.nextStartAfter as string;
  }
  contenders.sort((a, b) => a.token - b.token);
  return { contenders, appliedTxid };
}

/**
 * One contender of the lock `prefix` (a kv prefix such as `locks/db-migration/`) for one
 * session. Not for concurrent use: one `acquire` at a time.
 */
class Contention {
  readonly client: MetaraftClient;
  readonly session: Session;
  readonly prefix: string;
  /** This contender's key: the prefix and its session id. */
  readonly key: string;
  #token: number | undefined;

  constructor(client: MetaraftClient, session: Session, prefix: string) {
    if (prefix.length === 0) throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "a lock's prefix is empty");
    this.client = client;
    this.session = session;
    this.prefix = prefix;
    this.key = `${prefix}${session.id.toString(16).padStart(16, "0")}`;
  }

  /** The fencing token while the key exists: its create txid. */
  get token(): number | undefined {
    return this.#token;
  }

  /** Puts the key (once: a retry finds it made) and waits until no older key is left. */
  async acquire(value: string | Uint8Array, options: LockOptions = {}): Promise<number> {
    const { session } = this;
    const done = new AbortController();
    // Fails the wait when the caller aborts it or the session expires; unhooked once it settles.
    const stop = new Promise<never>((_, reject) => {
      const cancel = () =>
        reject(
          new MetaraftError("MR_ERR_CANCELLED", "the wait for the lock was cancelled", {
            cause: options.signal?.reason,
          }),
        );
      if (options.signal?.aborted) cancel();
      options.signal?.addEventListener("abort", cancel, { signal: done.signal });
      if (session.state !== "alive") {
        reject(new MetaraftError("MR_ERR_SESSION_EXPIRED", `session ${session.id} has ended`));
      }
      session.on("expired", reject);
      done.signal.addEventListener("abort", () => session.off("expired", reject));
    });
    // Each is raced against the other: the loser's failure must not go unhandled.
    const settled = <T>(promise: Promise<T>): Promise<T> => {
      promise.catch(() => {});
      return promise;
    };
    settled(stop);
    try {
      const token = await Promise.race([settled(this.#enter(value)), stop]);
      this.#token = token;
      await Promise.race([settled(this.#waitForPredecessors(token, done.signal)), stop]);
      return token;
    } catch (error) {
      // A contender that gives up must not block the ones behind it.
      await this.release().catch(() => {});
      throw error;
    } finally {
      done.abort();
    }
  }

  async #enter(value: string | Uint8Array): Promise<number> {
    const reply = await this.client.kvTxn({
      compare: [{ target: "create", key: this.key, op: "=", value: 0 }],
      success: [{ op: "put", key: this.key, value, session: this.session.id }],
      failure: [{ op: "get", key: this.key }],
    });
    if (reply.succeeded === true) return reply.txid as number;
    const kv = (reply.responses as { kv: Reply | null }[])[0]!.kv;
    if (!kv || kv.session !== this.session.id) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `${this.key} exists and is not session ${this.session.id}'s: the prefix holds keys that are not contenders'`,
      );
    }
    return kv.createTxid as number;
  }

  async #waitForPredecessors(token: number, done: AbortSignal): Promise<void> {
    while (!done.aborted) {
      const { contenders, appliedTxid } = await readContenders(this.client, this.prefix);
      if (!contenders.some((c) => c.token === token)) {
        throw new MetaraftError("MR_ERR_LOCK_NOT_HELD", `${this.key} is gone: its session ended`);
      }
      const before = contenders.filter((c) => c.token < token);
      if (before.length === 0) return;
      await this.#deleted(before[before.length - 1]!.key, appliedTxid + 1, done);
    }
  }

  /** Returns once `key` is deleted at or after `fromTxid` (or the ledger no longer reaches back to it). */
  async #deleted(key: string, fromTxid: number, done: AbortSignal): Promise<void> {
    const watch = this.client.watch({ prefix: `_kv/${key}`, fromTxid });
    const close = () => void watch.close();
    done.addEventListener("abort", close, { once: true });
    try {
      for await (const event of watch as AsyncIterable<LedgerEvent>) {
        // The prefix also matches longer keys: only this one's delete counts.
        if (event.type === "KvDelete:Delete" && event.key === key) return;
      }
    } catch (error) {
      // Pruned past: read the contenders again rather than fail the wait.
      if (!(error instanceof MetaraftError && error.code === "MR_ERR_COMPACTED")) throw error;
    } finally {
      done.removeEventListener("abort", close);
      await watch.close();
    }
  }

  /** Deletes the key, if it is still this contender's (a successor's is never touched). */
  async release(): Promise<void> {
    const token = this.#token;
    this.#token = undefined;
    if (token === undefined) {
      await this.client.kvDelete(this.key);
      return;
    }
    await this.client.kvTxn({
      compare: [{ target: "create", key: this.key, op: "=", value: token }],
      success: [{ op: "delete", key: this.key }],
    });
  }

  /** A txn of `ops` that runs only while this contender's key is the one it created. */
  async guarded(ops: readonly Reply[]): Promise<Reply> {
    const token = this.#token;
    if (token === undefined) throw new MetaraftError("MR_ERR_LOCK_NOT_HELD", `${this.key} is not held`);
    const reply = await this.client.kvTxn({
      compare: [{ target: "create", key: this.key, op: "=", value: token }],
      success: ops,
    });
    if (reply.succeeded !== true) {
      this.#token = undefined;
      throw new MetaraftError("MR_ERR_LOCK_NOT_HELD", `${this.key} is gone: its session ended`);
    }
    return reply;
  }
}

/**
 * A lock (etcd's Mutex): `lock()` waits until this session holds it and returns the fencing
 * token; `unlock()` releases it. Holders follow the order their keys were created in.
 */
export class Mutex {
  readonly #contention: Contention;

  constructor(client: MetaraftClient, session: Session, prefix: string) {
    this.#contention = new Contention(client, session, prefix);
  }

  get key(): string {
    return this.#contention.key;
  }

  /** The fencing token while held (or while waiting): the key's create txid. */
  get token(): number | undefined {
    return this.#contention.token;
  }

  lock(options: LockOptions = {}): Promise<number> {
    return this.#contention.acquire("", options);
  }

  unlock(): Promise<void> {
    return this.#contention.release();
  }

  /**
   * Runs the kv ops of a txn only while the lock is still this session's: a holder that lost
   * it (its session expired while it was paused) fails with MR_ERR_LOCK_NOT_HELD, writing nothing.
   */
  guard(ops: readonly Reply[]): Promise<Reply> {
    return this.#contention.guarded(ops);
  }
}

/** Who leads an election: the oldest contender's key and value, or undefined when nobody runs. */
export interface Leader {
  readonly key: string;
  readonly value: string | Uint8Array;
  readonly token: number;
}

/**
 * Leader election (etcd's Election): `campaign(value)` waits until this session leads and makes
 * `value` the leader's proclamation; `proclaim` changes it while leading; `resign` steps down.
 * Anyone can read `leader()` and follow `observe()`.
 */
export class Election {
  readonly #contention: Contention;

  constructor(client: MetaraftClient, session: Session, prefix: string) {
    this.#contention = new Contention(client, session, prefix);
  }

  get key(): string {
    return this.#contention.key;
  }

  campaign(value: string | Uint8Array, options: LockOptions = {}): Promise<number> {
    return this.#contention.acquire(value, options);
  }

  /** A new value for the leader's key, only while this session leads (else MR_ERR_LOCK_NOT_HELD). */
  async proclaim(value: string | Uint8Array): Promise<void> {
    const { key, session } = this.#contention;
    await this.#contention.guarded([{ op: "put", key, value, session: session.id }]);
  }

  resign(): Promise<void> {
    return this.#contention.release();
  }

  /** The current leader of the election at `prefix`. */
  static async leader(client: MetaraftClient, prefix: string): Promise<Leader | undefined> {
    const { contenders } = await readContenders(client, prefix);
    const first = contenders[0];
    return first && { key: first.key, value: first.value, token: first.token };
  }

  /**
   * The leader of the election at `prefix` as it changes (a new leader, or a new value): first
   * the current one, then each change, undefined while nobody leads. Ends when `signal` aborts.
   */
  static async *observe(
    client: MetaraftClient,
    prefix: string,
    options: { signal?: AbortSignal } = {},
  ): AsyncGenerator<Leader | undefined> {
    let { contenders, appliedTxid } = await readContenders(client, prefix);
    const watch = client.watch({ prefix: `_kv/${prefix}`, fromTxid: appliedTxid + 1 });
    const stop = () => void watch.close();
    options.signal?.addEventListener("abort", stop, { once: true });
    try {
      let last: Leader | undefined;
      let shown = false;
      for (;;) {
        const first = contenders[0];
        const leader = first && { key: first.key, value: first.value, token: first.token };
        const same =
          shown &&
          last?.key === leader?.key &&
          last?.token === leader?.token &&
          Buffer.from(last?.value ?? "").equals(Buffer.from(leader?.value ?? ""));
        if (!same) {
          yield leader;
          last = leader;
          shown = true;
        }
        const next = await watch.next();
        if (next.done || options.signal?.aborted) return;
        ({ contenders } = await readContenders(client, prefix));
      }
    } finally {
      options.signal?.removeEventListener("abort", stop);
      await watch.close();
    }
  }
}
