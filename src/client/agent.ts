import { EventEmitter } from "node:events";
import { hostname } from "node:os";
import { MetaraftError } from "../errors.js";
import { type ClientOptions, MetaraftClient } from "./client.js";
import type { Session } from "./session.js";
import type { Watch } from "./watch.js";

/**
 * An agent of the control plane (the Flume master's nodes on ZooKeeper): a process that holds a
 * session, shows its health in the ephemeral entry `agents/ID/status`, and receives its
 * configuration by watching `agents/ID/config/`, where `metaraft config push` writes.
 *
 * Keys: `agents/ID/info` (persistent: who it is and its latest session, so that `agents ls`
 * shows an agent whose session expired), `agents/ID/status` (ephemeral), `agents/ID/config/K`.
 */

export const AGENTS_PREFIX = "agents/";
export const agentInfoKey = (id: string): string => `${AGENTS_PREFIX}${id}/info`;
export const agentStatusKey = (id: string): string => `${AGENTS_PREFIX}${id}/status`;
export const agentConfigPrefix = (id: string): string => `${AGENTS_PREFIX}${id}/config/`;

/** An agent id: a path segment of `agents/`. */
export const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export const AGENT_DEFAULTS = {
  ttlMs: 10_000,
  /** After a failed registration the next try waits this long, doubling to `retryMaxMs`. */
  retryInitialMs: 200,
  retryMaxMs: 5_000,
} as const;

export interface AgentInfo {
  readonly id: string;
  readonly sessionId: number;
  readonly version: string;
  readonly host: string;
  readonly pid: number;
  readonly registeredAt: number;
}

export interface AgentStatus {
  readonly health: unknown;
  readonly version: string;
  readonly sessionId: number;
  readonly since: number;
}

/** A configuration change: `key` is relative to `agents/ID/config/`; `value` null when deleted. */
export interface ConfigChange {
  readonly key: string;
  readonly value: string | Uint8Array | null;
  readonly txid: number;
}

export interface AgentOptions
  extends Pick<ClientOptions, "endpoints" | "clusterId" | "timeoutMs" | "discoverEndpoints"> {
  readonly id: string;
  readonly ttlMs?: number;
  readonly version?: string;
  /** What the status entry says of its health (JSON); `"ok"` by default. */
  readonly health?: () => unknown;
  /** Called for each configuration change in txid order, one at a time (awaited). */
  readonly onConfig?: (change: ConfigChange) => void | Promise<void>;
}

/**
 * Events: `registered` (session id), `sessionLost` (MetaraftError MR_ERR_SESSION_EXPIRED: the
 * cluster expired it, its status is gone; the agent registers again at once), `disconnected`
 * and `reconnected` (heartbeats failing and back), `config` (each change, as `onConfig` gets
 * it), and `error` (a handler or a registration that failed; it is retried).
 */
export class Agent extends EventEmitter {
  readonly id: string;
  readonly client: MetaraftClient;
  readonly #options: AgentOptions;
  #session: Session | undefined;
  #watch: Watch | undefined;
  #stopped = false;
  #registering: Promise<void> | undefined;
  /** The txid last delivered per config key: a change is delivered once, in order. */
  readonly #delivered = new Map<string, number>();
  #configDone: Promise<void> = Promise.resolve();

  constructor(options: AgentOptions) {
    super();
    if (!AGENT_ID.test(options.id)) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `an agent id is 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit: ${JSON.stringify(options.id)}`,
      );
    }
    this.id = options.id;
    this.#options = options;
    this.client = new MetaraftClient({
      endpoints: options.endpoints,
      ...(options.clusterId ? { clusterId: options.clusterId } : {}),
      ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.discoverEndpoints === undefined ? {} : { discoverEndpoints: options.discoverEndpoints }),
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.client.runtime.after(ms, resolve).unref();
    });
  }

  /** The live session's id, if registered. */
  get sessionId(): number | undefined {
    return this.#session?.state === "alive" ? this.#session.id : undefined;
  }

  /** Registers (a session, its info and status entries) and starts following its configuration. */
  async start(): Promise<void> {
    await this.#register();
    await this.#follow();
  }

  async #register(): Promise<void> {
    const ttlMs = this.#options.ttlMs ?? AGENT_DEFAULTS.ttlMs;
    const version = this.#options.version ?? "unknown";
    const session = await this.client.createSession({ ttlMs });
    if (this.#stopped) {
      await session.close().catch(() => undefined);
      return;
    }
    this.#session = session;
    const now = this.client.runtime.now();
    const info: AgentInfo = {
      id: this.id,
      sessionId: session.id,
      version,
      host: hostname(),
      pid: process.pid,
      registeredAt: now,
    };
    await this.client.kvPut(agentInfoKey(this.id), JSON.stringify(info));
    const status: AgentStatus = {
      health: this.#options.health?.() ?? "ok",
      version,
      sessionId: session.id,
      since: now,
    };
    await this.client.kvPut(agentStatusKey(this.id), JSON.stringify(status), { session });
    session.on("disconnected", (error) => this.emit("disconnected", error));
    session.on("reconnected", () => this.emit("reconnected"));
    void session.ended.then((reason) => {
      if (!reason || this.#stopped || this.#session !== session) return;
      this.emit("sessionLost", reason);
      this.#reregister();
    });
    this.emit("registered", session.id);
  }

  /** Registers again until it works, with backoff; one attempt loop at a time. */
  #reregister(): void {
    if (this.#registering) return;
    this.#registering = (async () => {
      let wait: number = AGENT_DEFAULTS.retryInitialMs;
      while (!this.#stopped) {
        try {
          await this.#register();
          return;
        } catch (error) {
          if (this.listenerCount("error") > 0) this.emit("error", error);
          await this.#sleep(wait);
          wait = Math.min(AGENT_DEFAULTS.retryMaxMs, wait * 2);
        }
      }
    })().finally(() => {
      this.#registering = undefined;
    });
  }

  /** Updates the health its status entry shows. */
  async setHealth(health: unknown): Promise<void> {
    const session = this.#session;
    if (session?.state !== "alive") {
      throw new MetaraftError("MR_ERR_SESSION_EXPIRED", "the agent has no live session");
    }
    const status: AgentStatus = {
      health,
      version: this.#options.version ?? "unknown",
      sessionId: session.id,
      since: this.client.runtime.now(),
    };
    await this.client.kvPut(agentStatusKey(this.id), JSON.stringify(status), { session });
  }

  /**
   * The configuration as it stands, then every change after it. An event names the key, not
   * the value: the value is read back, and a value already overwritten is left to the later
   * change's own event, so the handler sees each key's values in order and always the last.
   */
  async #follow(): Promise<void> {
    const from = await this.#snapshot();
    this.#configDone = this.#followFrom(from);
  }

  /** Delivers the configuration as it stands; returns the txid to watch from. */
  async #snapshot(): Promise<number> {
    const prefix = agentConfigPrefix(this.id);
    let startAfter: string | undefined;
    let appliedTxid = 0;
    for (;;) {
      const page = await this.client.kvRange(prefix, startAfter === undefined ? {} : { startAfter });
      appliedTxid = Math.max(appliedTxid, page.appliedTxid as number);
      for (const entry of page.items as { key: string; value: string | Uint8Array; modTxid: number }[]) {
        await this.#deliver({ key: entry.key.slice(prefix.length), value: entry.value, txid: entry.modTxid });
      }
      if (page.truncated !== true) return appliedTxid + 1;
      startAfter = page.nextStartAfter as string;
    }
  }

  /**
   * Follows the changes from `from`, for as long as the agent runs: a watch that fails (the
   * cluster unreachable past the client's deadline) is opened again where it stopped, and one
   * the ledger pruned past starts over from the configuration as it stands.
   */
  async #followFrom(from: number): Promise<void> {
    const prefix = agentConfigPrefix(this.id);
    let next = from;
    let wait: number = AGENT_DEFAULTS.retryInitialMs;
    while (!this.#stopped) {
      const watch = this.client.watch({ prefix: `_kv/${prefix}`, fromTxid: next });
      this.#watch = watch;
      try {
        for await (const event of watch) {
          // Resumed at this txid, not after it: a txid's other events may still follow, and
          // `#deliver` drops what it has seen.
          next = event.txid;
          wait = AGENT_DEFAULTS.retryInitialMs;
          const key = event.key ?? "";
          const current = await this.#read(key);
          if (current === undefined) return; // Stopped.
          const relative = key.slice(prefix.length);
          if (event.type === "KvPut:Put") {
            if (current && current.modTxid === event.txid) {
              await this.#deliver({ key: relative, value: current.value, txid: event.txid });
            }
          } else if (!current) {
            await this.#deliver({ key: relative, value: null, txid: event.txid });
          }
        }
        return; // Closed by stop().
      } catch (error) {
        if (this.#stopped) return;
        if (this.listenerCount("error") > 0) this.emit("error", error);
        await this.#sleep(wait);
        wait = Math.min(AGENT_DEFAULTS.retryMaxMs, wait * 2);
        if (error instanceof MetaraftError && error.code === "MR_ERR_COMPACTED") {
          try {
            next = await this.#snapshot();
          } catch {
            // Tried again on the next round.
          }
        }
      }
    }
  }

  /** A key's entry, retried until the cluster answers (a network loss must not end the watch); undefined once stopped. */
  async #read(key: string): Promise<{ value: string | Uint8Array; modTxid: number } | null | undefined> {
    let wait: number = AGENT_DEFAULTS.retryInitialMs;
    while (!this.#stopped) {
      try {
        return (await this.client.kvGet(key)).kv as { value: string | Uint8Array; modTxid: number } | null;
      } catch {
        await this.#sleep(wait);
        wait = Math.min(AGENT_DEFAULTS.retryMaxMs, wait * 2);
      }
    }
    return undefined;
  }

  async #deliver(change: ConfigChange): Promise<void> {
    if ((this.#delivered.get(change.key) ?? 0) >= change.txid) return;
    this.#delivered.set(change.key, change.txid);
    try {
      await this.#options.onConfig?.(change);
      this.emit("config", change);
    } catch (error) {
      if (this.listenerCount("error") > 0) this.emit("error", error);
    }
  }

  /** Closes the session (its status entry goes at once) and stops following the configuration. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#watch?.close();
    await this.#configDone;
    await this.#session?.close().catch(() => undefined);
    this.client.close();
  }
}
