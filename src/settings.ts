import { CORE_MODE_DEFAULT, type CoreMode } from "./core/types.js";
import { type NodeId, RAFT_DEFAULTS } from "./raft/index.js";
import { CLUSTER_ID_BYTES_MAX, SECRET_BYTES_MIN } from "./transport/handshake.js";

/**
 * Every operator-facing setting of a node, declared once: its name and YAML path (its place in
 * `SETTINGS`), type, default, range, flag, unit and help. `Settings`, the defaults the node, the
 * Raft host, the write pipeline and the RPC server fall back to, `metaraft start --help` and its
 * config template all derive from this table, so a new setting is one entry here plus the code
 * that uses it.
 *
 * In the module map this sits above `raft`, `core` and `transport` (whose limits it uses) and
 * below `execution` and `server` (which take their defaults from it). The Raft core and the
 * WASM host import nothing above them, yet must default one setting each when used alone
 * (`electionTicks`, `core.mode`): those two defaults are declared there (`RAFT_DEFAULTS`,
 * `CORE_MODE_DEFAULT`) and this table refers to them rather than restating them.
 *
 * Limits an operator does not set (queue bounds, chunk sizes, retry intervals) stay beside the
 * code they bound.
 */

export const EXECUTION_MODES = ["leader-execution", "replicated-request"] as const;
export type ExecutionMode = (typeof EXECUTION_MODES)[number];
export const CORE_MODES = ["auto", "ts", "wasm", "pool"] as const satisfies readonly CoreMode[];
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Where one member of the cluster listens. */
export interface NodeAddress {
  readonly id: NodeId;
  readonly host: string;
  readonly raftPort: number;
  readonly clientPort: number;
}

/** The pieces of the default cluster and data directory (node <id> alone on this machine). */
export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_RAFT_PORT = 7001;
export const DEFAULT_CLIENT_PORT = 8001;
export const DEFAULT_DATA_ROOT = "./data";

const KiB = 1024;
const MiB = 1024 * 1024;
const INT32_MAX = 2 ** 31 - 1;

interface SettingBase {
  /** The flag, without `--`. */
  readonly flag: string;
  /** What the setting does, for `--help`; the path, default and range are added from the entry. */
  readonly help: string;
  /** Shown instead of the default: a default that depends on the node's id, or one not to advertise. */
  readonly defaultHelp?: string;
  /** The config template's value where the default is a poor example (a one-node cluster). */
  readonly example?: string;
  /** A comment line after the setting in the config template. */
  readonly note?: string;
}

export interface IntegerSetting extends SettingBase {
  readonly type: "integer";
  readonly default: number;
  readonly min: number;
  readonly max: number;
  /** What the number counts; `ms` and `bytes` also name the flag's argument. */
  readonly unit?: "ms" | "bytes" | "ticks" | "entries" | "batches";
}

export interface EnumSetting extends SettingBase {
  readonly type: "enum";
  readonly values: readonly string[];
  readonly default: string;
  /** The flag's argument in help, e.g. `<mode>`. */
  readonly arg: string;
}

export interface StringSetting extends SettingBase {
  readonly type: "string";
  /** UTF-8 bytes. */
  readonly minBytes: number;
  readonly maxBytes: number;
  /** A function of the node's id where the default depends on it. */
  readonly default: string | ((id: NodeId) => string);
  readonly arg: string;
}

export interface BooleanSetting extends SettingBase {
  readonly type: "boolean";
  readonly default: boolean;
}

/** The cluster: `id@host:raftPort:clientPort` joined by commas, or a list of members. */
export interface MembersSetting extends SettingBase {
  readonly type: "members";
  readonly default: (id: NodeId) => readonly NodeAddress[];
  readonly arg: string;
}

export type Setting = IntegerSetting | EnumSetting | StringSetting | BooleanSetting | MembersSetting;

/** Settings by name; a section of the YAML file (`raft: {tickMs: …}`) is a table of settings, one level deep. */
interface SettingsTable {
  readonly [name: string]: Setting | { readonly [name: string]: Setting };
}

/** Every setting, in the order of `metaraft start --help` and of the YAML file. */
export const SETTINGS = {
  id: {
    type: "integer",
    flag: "id",
    min: 1,
    max: Number.MAX_SAFE_INTEGER,
    default: 1,
    help: "this node's id, a member of the cluster",
  },
  cluster: {
    type: "members",
    flag: "cluster",
    arg: "<members>",
    default: (id: NodeId) => [
      { id, host: DEFAULT_HOST, raftPort: DEFAULT_RAFT_PORT, clientPort: DEFAULT_CLIENT_PORT },
    ],
    defaultHelp: `"<id>@${DEFAULT_HOST}:${DEFAULT_RAFT_PORT}:${DEFAULT_CLIENT_PORT}" (a one-node cluster)`,
    example: [1, 2, 3]
      .map((i) => `${i}@${DEFAULT_HOST}:${DEFAULT_RAFT_PORT + i - 1}:${DEFAULT_CLIENT_PORT + i - 1}`)
      .join(","),
    note:
      `or a list: ["1@${DEFAULT_HOST}:${DEFAULT_RAFT_PORT}:${DEFAULT_CLIENT_PORT}", ...] or ` +
      `[{id: 1, host: ${DEFAULT_HOST}, raftPort: ${DEFAULT_RAFT_PORT}, clientPort: ${DEFAULT_CLIENT_PORT}}, ...]`,
    help: "every member, id@host:raftPort:clientPort joined by commas",
  },
  data: {
    type: "string",
    flag: "data",
    arg: "<dir>",
    minBytes: 1,
    maxBytes: 4096,
    default: (id: NodeId) => `${DEFAULT_DATA_ROOT}/node-${id}`,
    defaultHelp: `${DEFAULT_DATA_ROOT}/node-<id>`,
    help: "this node's data directory, relative to the working directory (created if missing)",
  },
  clusterId: {
    type: "string",
    flag: "cluster-id",
    arg: "<name>",
    minBytes: 1,
    maxBytes: CLUSTER_ID_BYTES_MAX,
    default: "metaraft-dev",
    help: "the cluster's name; nodes and clients must agree on it",
  },
  secret: {
    type: "string",
    flag: "secret",
    arg: "<secret>",
    minBytes: SECRET_BYTES_MIN,
    maxBytes: 4096,
    // Fine on loopback; `metaraft start` warns when a cluster beyond loopback keeps it.
    default: "metaraft-dev-secret-change-me",
    defaultHelp: "a dev secret: change it off loopback",
    example: `a shared secret of ${SECRET_BYTES_MIN}+ bytes`,
    help: "the peers' shared secret",
  },
  raft: {
    tickMs: {
      type: "integer",
      flag: "tick-ms",
      unit: "ms",
      min: 1,
      max: 60_000,
      default: 50,
      help: "Raft tick (heartbeat interval)",
    },
    electionTicks: {
      type: "integer",
      flag: "election-ticks",
      unit: "ticks",
      min: 2,
      max: 10_000,
      default: RAFT_DEFAULTS.electionTicks,
      help: "ticks without a leader before an election (randomised up to twice that)",
    },
    snapshotEntries: {
      type: "integer",
      flag: "snapshot-entries",
      unit: "entries",
      min: 1,
      max: INT32_MAX,
      default: 10_000,
      help: "applied entries between snapshots (log compaction)",
    },
    snapshotTrailingEntries: {
      type: "integer",
      flag: "snapshot-trailing-entries",
      unit: "entries",
      min: 0,
      max: INT32_MAX,
      default: 1_000,
      help: "entries kept behind a snapshot, so that a follower slightly behind catches up from the log",
    },
  },
  execution: {
    mode: {
      type: "enum",
      flag: "execution-mode",
      arg: "<mode>",
      values: EXECUTION_MODES,
      default: "leader-execution",
      help: "execute writes on the leader and replicate write sets, or replicate each request and execute it everywhere",
    },
    batchers: {
      type: "integer",
      flag: "batchers",
      unit: "batches",
      min: 1,
      max: 32,
      default: 6,
      help: "batches (Raft entries) in flight at once",
    },
    batchBytesMax: {
      type: "integer",
      flag: "batch-bytes-max",
      unit: "bytes",
      min: 1024,
      max: 8 * MiB,
      default: 4 * MiB,
      help: "write-set bytes one batch takes at most",
    },
  },
  events: {
    disabled: {
      type: "boolean",
      flag: "no-events",
      default: false,
      help: "record no events (only to measure what the ledger costs: listeners and watches see nothing)",
    },
    max: {
      type: "integer",
      flag: "events-max",
      unit: "entries",
      min: 1,
      max: Number.MAX_SAFE_INTEGER,
      default: 1_000_000,
      help: "events the ledger keeps at least; older ones go once every enabled listener has checkpointed them",
    },
    hardMax: {
      type: "integer",
      flag: "events-hard-max",
      unit: "entries",
      min: 1,
      max: Number.MAX_SAFE_INTEGER,
      default: 10_000_000,
      help: "events the ledger keeps at most: past it, events go even if a listener has not checkpointed them (it is told what it missed)",
    },
  },
  lifecycle: {
    tickMs: {
      type: "integer",
      flag: "lifecycle-tick-ms",
      unit: "ms",
      min: 1,
      max: 60 * 60 * 1000,
      default: 1_000,
      help: "the lifecycle service scans one page of keys this often (on the leader)",
    },
    pageKeys: {
      type: "integer",
      flag: "lifecycle-page-keys",
      unit: "entries",
      min: 1,
      max: 10_000,
      default: 1_000,
      help: "keys the lifecycle service looks at per tick: its work per tick is bounded by it",
    },
    passIntervalMs: {
      type: "integer",
      flag: "lifecycle-pass-interval-ms",
      unit: "ms",
      min: 0,
      max: 7 * 24 * 60 * 60 * 1000,
      default: 60_000,
      help: "after a pass over every bucket with rules, the next starts this long after (at once when the rules change)",
    },
  },
  watch: {
    progressMs: {
      type: "integer",
      flag: "watch-progress-ms",
      unit: "ms",
      min: 10,
      max: 60 * 60 * 1000,
      default: 1_000,
      help: "an idle watch is told the current txid this often (its client also sees the node is alive)",
    },
    bufferBytesMax: {
      type: "integer",
      flag: "watch-buffer-bytes-max",
      unit: "bytes",
      min: 64 * 1024,
      max: 64 * MiB,
      default: MiB,
      help: "events one watch holds in memory at most (estimated as sent); a watch behind that reads the ledger instead",
    },
    watchersMax: {
      type: "integer",
      flag: "watchers-max",
      min: 1,
      max: 1_000_000,
      default: 1024,
      help: "watches one node serves at once; more are refused with MR_ERR_WATCH_LIMIT",
    },
  },
  queue: {
    segmentBytes: {
      type: "integer",
      flag: "queue-segment-bytes",
      unit: "bytes",
      min: 4 * KiB,
      max: 1024 * MiB,
      default: 4 * MiB,
      help: "a durable queue's data rolls over into a new segment at this many bytes; a segment is deleted once truncated past (fixed per queue when it is created)",
    },
    truncationBytes: {
      type: "integer",
      flag: "queue-truncation-bytes",
      unit: "bytes",
      min: 1,
      max: 1024 * MiB,
      default: 128 * KiB,
      help: "a queue consumer replicates its restart point (a truncation) each time it has processed this many bytes, unless the consumer says otherwise",
    },
    outstandingBytesMax: {
      type: "integer",
      flag: "queue-outstanding-bytes-max",
      unit: "bytes",
      min: 1 * KiB,
      max: 64 * 1024 * MiB,
      default: 64 * MiB,
      help: "bytes a queue holds not yet truncated, unless its consumer says otherwise: an add past it fails at once with MR_ERR_QUEUE_FULL",
    },
  },
  kv: {
    keyBytesMax: {
      type: "integer",
      flag: "kv-key-bytes-max",
      unit: "bytes",
      min: 1,
      // Keys past LMDB's key limit are stored in groups (src/coordination/kv-keys.ts); a member
      // row holds the key's bytes past the first 1,900, and their length is a u16.
      max: 4 * KiB,
      default: 4 * KiB,
      help: "UTF-8 bytes of a coordination key at most",
    },
    longKeyGroupMax: {
      type: "integer",
      flag: "kv-long-key-group-max",
      unit: "entries",
      min: 1,
      max: 4_096,
      default: 256,
      help: "coordination keys over 1900 bytes that share their first 1900 bytes, at most: their shared directory (32 bytes a key) is rewritten on each create and delete",
    },
    valueBytesMax: {
      type: "integer",
      flag: "kv-value-bytes-max",
      unit: "bytes",
      min: 1,
      max: 16 * MiB,
      default: MiB,
      help: "bytes of a coordination value at most (request-bytes-max bounds a whole request too)",
    },
    txnOpsMax: {
      type: "integer",
      flag: "kv-txn-ops-max",
      unit: "entries",
      min: 1,
      max: 10_000,
      default: 128,
      help: "compares and ops of one kv txn together at most",
    },
    deleteKeysMax: {
      type: "integer",
      flag: "kv-delete-keys-max",
      unit: "entries",
      min: 1,
      max: 100_000,
      default: 1_000,
      help: "keys one prefix delete removes at most; the reply says when keys remain",
    },
  },
  session: {
    ttlMaxMs: {
      type: "integer",
      flag: "session-ttl-max-ms",
      unit: "ms",
      min: 2_000,
      max: 86_400_000,
      default: 3_600_000,
      help: "the longest session TTL a client may ask for (the shortest is 2000 ms)",
    },
    expiryCheckMs: {
      type: "integer",
      flag: "session-expiry-check-ms",
      unit: "ms",
      min: 10,
      max: 5_000,
      default: 100,
      help: "how often the leader looks for sessions past their TTL: a session expires within TTL plus this",
    },
    checkpointMs: {
      type: "integer",
      flag: "session-checkpoint-ms",
      unit: "ms",
      min: 100,
      max: 3_600_000,
      default: 10_000,
      help: "how often the leader records the remaining TTL of sessions with longer TTLs that are not heartbeating, so that leader changes cannot keep a dead session alive",
    },
    sessionsMax: {
      type: "integer",
      flag: "session-sessions-max",
      unit: "entries",
      min: 1,
      max: 10_000_000,
      default: 1_000_000,
      help: "open sessions in the cluster at most: a create past it fails with MR_ERR_SESSION_LIMIT",
    },
    ephemeralKeysMax: {
      type: "integer",
      flag: "session-ephemeral-keys-max",
      unit: "entries",
      min: 1,
      max: 100_000,
      default: 1_000,
      help: "ephemeral entries one session holds at most",
    },
  },
  core: {
    mode: {
      type: "enum",
      flag: "core-mode",
      arg: "<mode>",
      values: CORE_MODES,
      default: CORE_MODE_DEFAULT,
      help: "the byte-level core (auto picks by input size)",
    },
  },
  requestBytesMax: {
    type: "integer",
    flag: "request-bytes-max",
    unit: "bytes",
    min: 1024,
    max: 16 * MiB,
    default: 4 * MiB,
    help: "the largest request a client may send",
  },
  noSync: {
    type: "boolean",
    flag: "no-sync",
    default: false,
    help: "do not fsync commits (tests and benchmarks only: loses data on a crash)",
  },
  log: {
    level: {
      type: "enum",
      flag: "log-level",
      arg: "<level>",
      values: LOG_LEVELS,
      default: "info",
      help: "log level (logs go to stderr)",
    },
  },
} as const satisfies SettingsTable;

/** The value a setting holds once checked. */
export type ValueOf<S> = S extends { readonly type: "integer" }
  ? number
  : S extends { readonly type: "enum"; readonly values: readonly (infer V)[] }
    ? V
    : S extends { readonly type: "string" }
      ? string
      : S extends { readonly type: "boolean" }
        ? boolean
        : S extends { readonly type: "members" }
          ? readonly NodeAddress[]
          : never;

/** A setting's value, or a section's values (sections are one level deep). */
type EntryValue<E> = E extends { readonly type: string; readonly flag: string }
  ? ValueOf<E>
  : { readonly [K in keyof E]: ValueOf<E[K]> };

/**
 * The effective configuration of a node, every setting filled in and checked: the shape of
 * `SETTINGS` with each entry replaced by its value, e.g. `{ id: number, …, raft: { tickMs:
 * number, … }, execution: { mode: ExecutionMode, … }, … }`.
 */
export type Settings = { readonly [K in keyof typeof SETTINGS]: EntryValue<(typeof SETTINGS)[K]> };

/** A setting with its dotted YAML path (`raft.tickMs`). */
export type PathedSetting = Setting & { readonly path: string };

function flatten(table: SettingsTable, prefix: string): PathedSetting[] {
  return Object.entries(table).flatMap(([name, entry]) =>
    "type" in entry && typeof entry.type === "string"
      ? [{ ...(entry as Setting), path: prefix + name }]
      : flatten(entry as Record<string, Setting>, `${prefix}${name}.`),
  );
}

/** Every setting, in table order, with its path. */
export const SETTING_LIST: readonly PathedSetting[] = flatten(SETTINGS, "");

/** A setting's default for node `id`. */
export function defaultOf(setting: Setting, id: NodeId): unknown {
  return typeof setting.default === "function" ? setting.default(id) : setting.default;
}
