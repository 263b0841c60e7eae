import { pack, unpack } from "msgpackr";
import { MetaraftError } from "../errors.js";
import type { StateMachine } from "../host/index.js";
import type { Entry } from "../raft/index.js";

/** A command of the minimal replicated key-value store that proves the consensus layer. */
export type KvCommand =
  | { readonly op: "put"; readonly key: string; readonly value: string }
  | { readonly op: "noop" };

export interface KvResult {
  readonly index: number;
}

export const KV_KEY_BYTES_MAX = 1024;
export const KV_VALUE_BYTES_MAX = 1024 * 1024;

export function encodeKvCommand(command: KvCommand): Uint8Array {
  if (command.op === "put") {
    if (typeof command.key !== "string" || Buffer.byteLength(command.key) > KV_KEY_BYTES_MAX) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `key must be a string of at most ${KV_KEY_BYTES_MAX} bytes`,
      );
    }
    if (typeof command.value !== "string" || Buffer.byteLength(command.value) > KV_VALUE_BYTES_MAX) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `value must be a string of at most ${KV_VALUE_BYTES_MAX} bytes`,
      );
    }
  }
  return pack(command);
}

/**
 * Keys and values in memory, rebuilt after a restart from the latest snapshot plus the log.
 * `opaque` mode applies nothing (the Raft benchmark's no-op state machine).
 */
export class KvStateMachine implements StateMachine<KvResult> {
  #data = new Map<string, string>();
  #applied = 0;

  constructor(readonly opaque = false) {}

  get appliedIndex(): number {
    return this.#applied;
  }

  get size(): number {
    return this.#data.size;
  }

  get(key: string): string | undefined {
    return this.#data.get(key);
  }

  apply(entry: Entry): KvResult {
    this.#applied = entry.index;
    if (this.opaque || entry.type !== "normal" || entry.data.length === 0) return { index: entry.index };
    // Entries are checked when proposed; anything else (opaque bench data) is a no-op here,
    // the same on every node.
    let command: KvCommand | undefined;
    try {
      command = unpack(entry.data) as KvCommand;
    } catch {
      return { index: entry.index };
    }
    if (command?.op === "put" && typeof command.key === "string" && typeof command.value === "string") {
      this.#data.set(command.key, command.value);
    }
    return { index: entry.index };
  }

  snapshot(): Uint8Array {
    return pack([...this.#data]);
  }

  restore(data: Uint8Array, index: number): void {
    this.#data = data.length === 0 ? new Map() : new Map(unpack(data) as [string, string][]);
    this.#applied = index;
  }
}
