import { pack, unpack } from "msgpackr";
import { MetaraftError } from "../errors.js";
import type { LedgerReader } from "./ledger.js";

/**
 * The listeners a cluster runs, as replicated state (`checkpoints` table, `listener/NAME`): what
 * to load, where it runs, whether it is enabled, and the last txid it checkpointed. Replicated,
 * so that a new leader runs the same listeners from where the old one stopped, `listeners add`
 * needs no restart, and every node's pruning respects the same checkpoints.
 */

export const LISTENER_RUNNERS = ["node", "process"] as const;
/** `node`: in a worker thread of the leader; `process`: in `metaraft listeners run` beside it. */
export type ListenerRunner = (typeof LISTENER_RUNNERS)[number];

export interface ListenerRecord {
  readonly name: string;
  /** A module path (absolute, or relative to the node's working directory), a package, or a shipped sink (`webhook`, `ndjson`). */
  readonly module: string;
  readonly options: Readonly<Record<string, unknown>>;
  readonly runner: ListenerRunner;
  readonly enabled: boolean;
  /** The last txid delivered and checkpointed (0: none). */
  readonly checkpoint: number;
  /** When the checkpoint was taken (ms since the epoch; 0: never). */
  readonly checkpointTime: number;
  readonly createdTxid: number;
  /**
   * Bumped by `listeners restart`: a host that runs this listener restarts it when it changes
   * (replicated, so that it reaches the separate runner as well as the node).
   */
  readonly generation: number;
}

export const LISTENER_PREFIX = "listener/";
/** Listeners a cluster holds at most. */
export const LISTENERS_MAX = 64;
/** Names: letters, digits, `-`, `_` and `.`, 1 to 64 of them. */
export const LISTENER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Bytes of a listener's options at most (MessagePack). */
export const LISTENER_OPTIONS_BYTES_MAX = 64 * 1024;

export const listenerKey = (name: string): string => `${LISTENER_PREFIX}${name}`;

export function encodeListener(record: ListenerRecord): Uint8Array {
  return pack({ v: 1, ...record });
}

export function decodeListener(bytes: Uint8Array, key: string): ListenerRecord {
  const r = unpack(bytes) as Partial<ListenerRecord> & { v?: number };
  if (r?.v !== 1 || typeof r.name !== "string" || typeof r.module !== "string") {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `listener record ${key} is malformed`);
  }
  return {
    name: r.name,
    module: r.module,
    options: r.options ?? {},
    runner: r.runner === "process" ? "process" : "node",
    enabled: r.enabled !== false,
    checkpoint: r.checkpoint ?? 0,
    checkpointTime: r.checkpointTime ?? 0,
    createdTxid: r.createdTxid ?? 0,
    generation: r.generation ?? 0,
  };
}

export function readListener(reader: LedgerReader, name: string): ListenerRecord | undefined {
  const key = listenerKey(name);
  const bytes = reader.get("checkpoints", key);
  return bytes ? decodeListener(bytes, key) : undefined;
}

export function listListeners(reader: LedgerReader): ListenerRecord[] {
  return reader
    .scan("checkpoints", LISTENER_PREFIX, undefined, LISTENERS_MAX + 1)
    .map((row) => decodeListener(row.value, row.key));
}

/** The lowest checkpoint of the enabled listeners: what pruning must keep (Infinity: no listener). */
export function checkpointMin(reader: LedgerReader): number {
  let min = Number.POSITIVE_INFINITY;
  for (const listener of listListeners(reader)) {
    if (listener.enabled) min = Math.min(min, listener.checkpoint);
  }
  return min;
}

/** A listener named in a node's config: registered when its node first leads, updated when the config changes it. */
export interface ListenerDeclaration {
  readonly name: string;
  readonly module: string;
  readonly options: Readonly<Record<string, unknown>>;
  readonly runner: ListenerRunner;
  /** Where a newly registered one starts: `start` (every event held) by default, or `now`. */
  readonly from: "now" | "start";
}

/** Checks the `listeners:` list of a config file; an error names the entry and what is wrong. */
export function parseListenerDeclarations(value: unknown, source: string): ListenerDeclaration[] {
  const bad = (detail: string): MetaraftError =>
    new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${source}: listeners ${detail}`);
  if (!Array.isArray(value)) throw bad("must be a list of {name, module, options?, runner?, from?}");
  if (value.length > LISTENERS_MAX) throw bad(`holds ${value.length} entries; at most ${LISTENERS_MAX}`);
  const names = new Set<string>();
  return value.map((entry: unknown, i) => {
    if (typeof entry !== "object" || entry === null || Array.isArray(entry))
      throw bad(`[${i}] must be a map`);
    const e = entry as Record<string, unknown>;
    for (const key of Object.keys(e)) {
      if (!["name", "module", "options", "runner", "from"].includes(key))
        throw bad(`[${i}] has an unknown key "${key}"`);
    }
    if (typeof e.name !== "string" || !LISTENER_NAME.test(e.name)) {
      throw bad(`[${i}].name must match ${LISTENER_NAME} (letters, digits, ., _ and -)`);
    }
    if (names.has(e.name)) throw bad(`[${i}]: the name ${e.name} is declared twice`);
    names.add(e.name);
    if (typeof e.module !== "string" || e.module.length === 0 || e.module.length > 4096) {
      throw bad(`[${i}] (${e.name}).module must be a module path, a package or a shipped sink`);
    }
    const options = e.options ?? {};
    if (typeof options !== "object" || options === null || Array.isArray(options)) {
      throw bad(`[${i}] (${e.name}).options must be a map`);
    }
    if (pack(options).length > LISTENER_OPTIONS_BYTES_MAX) {
      throw bad(`[${i}] (${e.name}).options exceed ${LISTENER_OPTIONS_BYTES_MAX} bytes`);
    }
    const runner = e.runner ?? "node";
    if (!LISTENER_RUNNERS.includes(runner as ListenerRunner))
      throw bad(`[${i}] (${e.name}).runner must be node or process`);
    const from = e.from ?? "start";
    if (from !== "now" && from !== "start") throw bad(`[${i}] (${e.name}).from must be now or start`);
    return {
      name: e.name,
      module: e.module,
      options: options as Record<string, unknown>,
      runner: runner as ListenerRunner,
      from,
    };
  });
}
