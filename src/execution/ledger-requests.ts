import { pack } from "msgpackr";
import type { CoreSync } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import {
  encodeListener,
  LISTENER_NAME,
  LISTENER_OPTIONS_BYTES_MAX,
  LISTENER_RUNNERS,
  LISTENERS_MAX,
  type ListenerRecord,
  type ListenerRunner,
  listenerKey,
  listListeners,
  readLedger,
  readListener,
  readSummary,
} from "../events/index.js";
import type { Execution, Request, RequestSpec, StateReader } from "./types.js";

/**
 * The ledger's requests: the listener registry (add, update, remove, checkpoint), replicated so
 * that every node prunes by the same checkpoints and a new leader runs the same listeners from
 * where the old one stopped; and the reads of the ledger (`readEvents`, `listeners`).
 */

/** Events one `readEvents` call returns at most. */
export const READ_EVENTS_LIMIT_MAX = 10_000;
const MODULE_BYTES_MAX = 4096;
const PREFIX_BYTES_MAX = 4096;

function field<T>(raw: Request, name: string, check: (v: unknown) => v is T, what: string): T {
  const value = raw[name];
  if (!check(value)) throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${name} must be ${what}`);
  return value;
}
const isString = (v: unknown): v is string => typeof v === "string";
const isBoolean = (v: unknown): v is boolean => typeof v === "boolean";
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function nameOf(raw: Request): string {
  const name = field(raw, "name", isString, "a string");
  if (!LISTENER_NAME.test(name)) {
    throw new MetaraftError(
      "MR_ERR_INVALID_NAME",
      `listener name ${JSON.stringify(name)}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}

function optionsOf(raw: Request): Record<string, unknown> | undefined {
  if (raw.options === undefined) return undefined;
  const options = field(raw, "options", isObject, "an object");
  const bytes = pack(options).length;
  if (bytes > LISTENER_OPTIONS_BYTES_MAX) {
    throw new MetaraftError(
      "MR_ERR_REQUEST_TOO_LARGE",
      `listener options are ${bytes} bytes, over ${LISTENER_OPTIONS_BYTES_MAX}`,
    );
  }
  return options;
}

function moduleOf(raw: Request): string {
  const module = field(raw, "module", isString, "a string");
  if (module.length === 0 || Buffer.byteLength(module) > MODULE_BYTES_MAX) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `module must be 1 to ${MODULE_BYTES_MAX} bytes`);
  }
  return module;
}

function runnerOf(raw: Request): ListenerRunner | undefined {
  if (raw.runner === undefined) return undefined;
  if (!LISTENER_RUNNERS.includes(raw.runner as ListenerRunner)) {
    throw new MetaraftError(
      "MR_ERR_INVALID_ARGUMENT",
      `runner must be one of ${LISTENER_RUNNERS.join(", ")}`,
    );
  }
  return raw.runner as ListenerRunner;
}

function requireListener(reader: StateReader, name: string): ListenerRecord {
  const record = readListener(reader, name);
  if (!record) throw new MetaraftError("MR_ERR_LISTENER_NOT_FOUND", `listener ${name}`);
  return record;
}

function put(record: ListenerRecord): Execution["writes"][number] {
  return { table: "checkpoints", key: listenerKey(record.name), value: encodeListener(record) };
}

interface ListenerAddRequest extends Request {
  readonly op: "listenerAdd";
  readonly name: string;
  readonly module: string;
  readonly options: Record<string, unknown>;
  readonly runner: ListenerRunner;
  readonly enabled: boolean;
  /** Deliver from: `now` (events after this request), `start` (the oldest held), or after a txid. */
  readonly from: "now" | "start" | number;
}

export const listenerAddSpec: RequestSpec<ListenerAddRequest> = {
  op: "listenerAdd",
  kind: "write",
  validate(raw) {
    const from = raw.from ?? "now";
    if (!(from === "now" || from === "start" || isCount(from))) {
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "from must be now, start or a txid");
    }
    return {
      op: "listenerAdd",
      name: nameOf(raw),
      module: moduleOf(raw),
      options: optionsOf(raw) ?? {},
      runner: runnerOf(raw) ?? "node",
      enabled: raw.enabled === undefined ? true : field(raw, "enabled", isBoolean, "a boolean"),
      from,
    };
  },
  execute(request, { txid, time, reader }) {
    if (readListener(reader, request.name)) {
      throw new MetaraftError("MR_ERR_LISTENER_EXISTS", `listener ${request.name}`);
    }
    if (listListeners(reader).length >= LISTENERS_MAX) {
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${LISTENERS_MAX} listeners are registered already`);
    }
    const checkpoint =
      request.from === "now" ? txid - 1 : request.from === "start" ? 0 : Math.min(request.from, txid - 1);
    const record: ListenerRecord = {
      name: request.name,
      module: request.module,
      options: request.options,
      runner: request.runner,
      enabled: request.enabled,
      checkpoint,
      checkpointTime: time,
      createdTxid: txid,
      generation: 0,
    };
    return { writes: [put(record)], reply: { listener: record } };
  },
};

interface ListenerUpdateRequest extends Request {
  readonly op: "listenerUpdate";
  readonly name: string;
  readonly enabled?: boolean;
  readonly options?: Record<string, unknown>;
  readonly module?: string;
  readonly runner?: ListenerRunner;
  /** `listeners restart`: the host that runs it stops and starts it again. */
  readonly restart?: boolean;
}

/** `listeners start|stop|restart` (enabled, restart) and changes of options, module or runner. */
export const listenerUpdateSpec: RequestSpec<ListenerUpdateRequest> = {
  op: "listenerUpdate",
  kind: "write",
  validate(raw) {
    const options = optionsOf(raw);
    const runner = runnerOf(raw);
    return {
      op: "listenerUpdate",
      name: nameOf(raw),
      ...(raw.enabled === undefined ? {} : { enabled: field(raw, "enabled", isBoolean, "a boolean") }),
      ...(options ? { options } : {}),
      ...(raw.module === undefined ? {} : { module: moduleOf(raw) }),
      ...(runner ? { runner } : {}),
      ...(raw.restart === undefined ? {} : { restart: field(raw, "restart", isBoolean, "a boolean") }),
    };
  },
  execute(request, { reader }) {
    const before = requireListener(reader, request.name);
    const record: ListenerRecord = {
      ...before,
      ...(request.enabled === undefined ? {} : { enabled: request.enabled }),
      ...(request.options ? { options: request.options } : {}),
      ...(request.module ? { module: request.module } : {}),
      ...(request.runner ? { runner: request.runner } : {}),
      ...(request.restart ? { generation: before.generation + 1 } : {}),
    };
    return { writes: [put(record)], reply: { listener: record } };
  },
};

export const listenerRemoveSpec: RequestSpec<Request & { op: "listenerRemove"; name: string }> = {
  op: "listenerRemove",
  kind: "write",
  validate: (raw) => ({ op: "listenerRemove", name: nameOf(raw) }),
  execute(request, { reader }) {
    requireListener(reader, request.name);
    return { writes: [{ table: "checkpoints", key: listenerKey(request.name), value: null }], reply: {} };
  },
};

/**
 * A listener's checkpoint: the last txid it delivered. It only moves forward (a late checkpoint
 * from a deposed leader's listener is ignored), and never past the txid of this request.
 */
export const listenerCheckpointSpec: RequestSpec<
  Request & { op: "listenerCheckpoint"; name: string; txid: number }
> = {
  op: "listenerCheckpoint",
  kind: "write",
  validate: (raw) => ({
    op: "listenerCheckpoint",
    name: nameOf(raw),
    txid: field(raw, "txid", isCount, "a txid"),
  }),
  execute(request, { txid, time, reader }) {
    const before = requireListener(reader, request.name);
    if (request.txid >= txid) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `checkpoint ${request.txid} is not below this request's txid ${txid}`,
      );
    }
    if (request.txid <= before.checkpoint) return { writes: [], reply: { checkpoint: before.checkpoint } };
    const record = { ...before, checkpoint: request.txid, checkpointTime: time };
    return { writes: [put(record)], reply: { checkpoint: record.checkpoint } };
  },
};

export const listenersSpec: RequestSpec<Request & { op: "listeners" }> = {
  op: "listeners",
  kind: "read",
  validate: () => ({ op: "listeners" }),
  execute: (_request, { txid, reader }) => ({
    writes: [],
    reply: { listeners: listListeners(reader), ledger: readSummary(reader), lastTxid: txid },
  }),
};

interface ReadEventsRequest extends Request {
  readonly op: "readEvents";
  readonly afterTxid: number;
  readonly limit: number;
  readonly prefix: string;
}

/** The ledger's reads: `readEvents` needs the core to decode records. */
export function ledgerSpecs(core: CoreSync): readonly RequestSpec[] {
  const readEventsSpec: RequestSpec<ReadEventsRequest> = {
    op: "readEvents",
    kind: "read",
    validate(raw) {
      const prefix = raw.prefix === undefined ? "" : field(raw, "prefix", isString, "a string");
      if (Buffer.byteLength(prefix) > PREFIX_BYTES_MAX) {
        throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `prefix is over ${PREFIX_BYTES_MAX} bytes`);
      }
      const limit = raw.limit === undefined ? 1000 : field(raw, "limit", isCount, "a count");
      if (limit < 1 || limit > READ_EVENTS_LIMIT_MAX) {
        throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `limit must be 1 to ${READ_EVENTS_LIMIT_MAX}`);
      }
      return {
        op: "readEvents",
        afterTxid: raw.afterTxid === undefined ? 0 : field(raw, "afterTxid", isCount, "a txid"),
        limit,
        prefix,
      };
    },
    execute(request, { txid, reader }) {
      // `txid` of a read is the last applied one: the events up to it are all in the ledger.
      const read = readLedger(reader, core, request.afterTxid, request.limit, { prefix: request.prefix });
      return { writes: [], reply: { ...read, appliedTxid: txid } };
    },
  };
  return [
    listenerAddSpec,
    listenerUpdateSpec,
    listenerRemoveSpec,
    listenerCheckpointSpec,
    listenersSpec,
    readEventsSpec,
  ] as readonly RequestSpec[];
}
