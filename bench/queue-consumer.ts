import type { QueueHandler } from "../src/queues/index.js";

/**
 * The benchmark's queue consumer: processes nothing, so that `bench:queue` measures the queue
 * (adds through Raft, the tail's reads, truncations) and not a handler's work.
 */
export default function benchConsumer(): QueueHandler {
  return () => {};
}
