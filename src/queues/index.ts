/** Durable queues (DESIGN.md, "Durable queues"): the one entry point of `src/queues/`. */

export {
  loadQueueHandler,
  parseQueueDeclarations,
  QUEUE_OPTIONS_BYTES_MAX,
  type QueueDeclaration,
} from "./declarations.js";
export {
  type DurableQueue,
  QUEUE_METRICS,
  type QueueAddReply,
  type QueueConsumer,
  QueueManager,
  type QueueManagerParts,
  type QueueStatusRow,
  quantile,
} from "./manager.js";
export {
  CONSUMER_OPTIONS,
  type ConsumerOptions,
  parseConsumerOptions,
  QUEUE_SETTINGS_DEFAULT,
  type QueueConsumerContext,
  type QueueEvent,
  type QueueHandler,
  type QueueHandlerFactory,
  type QueueLog,
  type QueueSettings,
} from "./options.js";
export {
  DEAD_LETTER_ERROR_BYTES_MAX,
  DEAD_LETTERS_MAX,
  type DeadLetter,
  dataKey,
  dataPrefix,
  deadLetterKey,
  decodeDeadLetter,
  decodeMeta,
  listMetas,
  metaKey,
  parseDataKey,
  QUEUE_ADD_BYTES_MAX,
  QUEUE_ADD_EVENTS_MAX,
  QUEUE_EVENT_BYTES_MAX,
  QUEUE_NAME,
  QUEUES_MAX,
  type QueueMeta,
  readMeta,
  segmentOf,
} from "./records.js";
export {
  checkQueueName,
  DEAD_LETTERS_LIST_MAX,
  DEAD_LETTERS_PER_REQUEST_MAX,
  QUEUE_DELETE_ROWS_PER_REQUEST,
  QUEUE_INTERNAL_OPS,
  QUEUE_OUTSTANDING_BYTES,
  queueSpecs,
  summaryOf,
} from "./requests.js";
export { QueueTail, READ_BYTES_MAX, type TailState, type TailStatus } from "./tail.js";
