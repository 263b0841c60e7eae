import type { Model, TimedOp } from "../linearizability.js";

/**
 * The sequential specification of one bucket's keys and of the volume list, for the generic
 * linearizability checker. A rename touches two keys, so the history cannot be split by key as
 * `checkKv` does: the state is the whole bucket, kept small (a few keys) by the clients.
 */

type Base = TimedOp & { readonly client: number };

export type NsOp = Base &
  (
    | { readonly kind: "put"; readonly key: string; readonly value: string }
    /** `absent`: refused with KEY_NOT_FOUND. */
    | { readonly kind: "delete"; readonly key: string; readonly output?: "ok" | "absent" }
    /** `exists`: refused with KEY_EXISTS. */
    | {
        readonly kind: "rename";
        readonly key: string;
        readonly toKey: string;
        readonly output?: "ok" | "absent" | "exists";
      }
    | { readonly kind: "lookup"; readonly key: string; readonly output?: string | null }
    /** `output`: `listing` of the keys read. */
    | { readonly kind: "list"; readonly output?: string }
    | { readonly kind: "createVolume"; readonly volume: string }
    | { readonly kind: "listVolumes"; readonly output?: string }
  );

export interface NsState {
  /** key to etag */
  readonly keys: ReadonlyMap<string, string>;
  readonly volumes: readonly string[];
}

/** The keys and their etags as a list reads them: in key order. */
export function listing(keys: Iterable<[string, string]>): string {
  return [...keys]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

export function volumeListing(volumes: Iterable<string>): string {
  return [...volumes].sort().join(",");
}

export const namespaceModel: Model<NsState, NsOp> = {
  init: () => ({ keys: new Map(), volumes: ["vol"] }),
  step(state, op) {
    const pending = op.ret === null;
    switch (op.kind) {
      case "put": {
        const keys = new Map(state.keys);
        keys.set(op.key, op.value);
        return { ok: true, state: { ...state, keys } };
      }
      case "delete": {
        if (!state.keys.has(op.key)) return { ok: pending || op.output === "absent", state };
        const keys = new Map(state.keys);
        keys.delete(op.key);
        return { ok: pending || op.output === "ok", state: { ...state, keys } };
      }
      case "rename": {
        const value = state.keys.get(op.key);
        if (value === undefined) return { ok: pending || op.output === "absent", state };
        if (state.keys.has(op.toKey)) return { ok: pending || op.output === "exists", state };
        const keys = new Map(state.keys);
        keys.delete(op.key);
        keys.set(op.toKey, value);
        return { ok: pending || op.output === "ok", state: { ...state, keys } };
      }
      case "lookup":
        return { ok: pending || op.output === (state.keys.get(op.key) ?? null), state };
      case "list":
        return { ok: pending || op.output === listing(state.keys), state };
      case "createVolume":
        return { ok: true, state: { ...state, volumes: [...state.volumes, op.volume] } };
      case "listVolumes":
        return { ok: pending || op.output === volumeListing(state.volumes), state };
    }
  },
  key: (state) => `${listing(state.keys)}|${volumeListing(state.volumes)}`,
  readOnly: (op) =>
    op.kind === "lookup" ||
    op.kind === "list" ||
    op.kind === "listVolumes" ||
    (op.ret !== null && op.kind === "delete" && op.output === "absent") ||
    (op.ret !== null && op.kind === "rename" && op.output !== "ok"),
};

export function formatNsOp(op: NsOp, index: number): string {
  const { call, ret, client, ...rest } = op;
  return `#${index} client ${client} [${call}, ${ret ?? "pending"}] ${JSON.stringify(rest)}`;
}
