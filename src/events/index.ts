/** The event ledger, the listener plugin API and the shipped sinks: the one entry point of `src/events/`. */

export {
  formatRecords,
  RECORD_FORMATS,
  type RecordFormat,
  type S3EventRecord,
  type S3Notification,
  s3EncodeKey,
  s3Record,
} from "./format.js";
export {
  EMPTY_SUMMARY,
  type LedgerReader,
  type LedgerSummary,
  type LedgerTable,
  type LedgerWrite,
  ledgerWrites,
  PRUNE_RECORDS_PER_ENTRY,
  planPrune,
  READ_BYTES_MAX,
  type ReadOptions,
  type RetentionLimits,
  readLedger,
  readSummary,
} from "./ledger.js";
export {
  LEDGER_LISTENER_OPTIONS,
  LedgerListener,
  type LedgerListenerOptions,
  LISTENER_METRICS,
} from "./ledger-listener.js";
export type {
  EventListener,
  LedgerRead,
  LedgerView,
  ListenerContext,
  ListenerLog,
  ListenerState,
  ListenerStatus,
} from "./listener.js";
export {
  type EnumOption,
  type IntegerOption,
  type OptionSpec,
  type OptionTable,
  type OptionValues,
  optionError,
  parseOptions,
  type RawOptions,
  type StringMapOption,
  type StringOption,
} from "./options.js";
export {
  BUILTIN_PLUGINS,
  type BuiltinPlugin,
  contractProblems,
  loadPlugin,
  type PluginDeclaration,
  type PluginEnvironment,
} from "./plugins.js";
export { decodeRecord, encodeRecord, RECORD_EVENTS_MAX, type RecordHeader, recordHeader } from "./record.js";
export {
  checkpointMin,
  decodeListener,
  encodeListener,
  LISTENER_NAME,
  LISTENER_OPTIONS_BYTES_MAX,
  LISTENER_PREFIX,
  LISTENER_RUNNERS,
  LISTENERS_MAX,
  type ListenerDeclaration,
  type ListenerRecord,
  type ListenerRunner,
  listenerKey,
  listListeners,
  parseListenerDeclarations,
  readListener,
} from "./registry.js";
export { NDJSON_OPTIONS, type NdjsonOptions, NdjsonSink } from "./sinks/ndjson.js";
export { WEBHOOK_OPTIONS, type WebhookOptions, WebhookSink } from "./sinks/webhook.js";
export {
  EVENT_TYPE_CODES,
  EVENT_TYPE_OF_CODE,
  type EventDraft,
  type EventType,
  eventPaths,
  isKvEvent,
  KV_EVENT_PATH_PREFIX,
  type LedgerEvent,
  matchesPrefix,
  txidHex,
} from "./types.js";
