import { randomUUID } from "node:crypto";
import { pack, unpack } from "msgpackr";
import { MetaraftError } from "../errors.js";
import type { WritePipeline } from "../execution/pipeline.js";
import type { StateStore } from "../execution/state-store.js";
import type { StateReader } from "../execution/types.js";
import type { Leadership } from "../host/index.js";
import { type QueueConsumer, type QueueManager, readMeta } from "../queues/index.js";
import type { Runtime } from "../runtime.js";
import {
  type ExpiredKey,
  type ExpiryQueue,
  LIFECYCLE_SERVICE,
  LifecycleService,
  listServiceConfigs,
  ServiceManager,
  type ServiceStatus,
  type Submit,
} from "../services/index.js";

/** The lifecycle service's queue: a MessagePack `ExpiredKey` per event. */
export const LIFECYCLE_QUEUE = LIFECYCLE_SERVICE;

/**
 * The durable queue between the lifecycle scan and the deletes: its consumer (on the ready
 * leader) deletes each key through `expireKey`, which spares a key overwritten since. A delete
 * that fails (the leader stepped down) is retried by the queue from its truncation point.
 */
export function lifecycleQueue(queues: QueueManager, store: StateReader, submit: Submit): ExpiryQueue {
  // Registered only once there is something to consume: a cluster that never expires a key
  // writes nothing for it (registering proposes an entry on every new leader).
  let consumer: QueueConsumer | undefined;
  const ensure = (): QueueConsumer => {
    consumer ??= queues.forConsumer(LIFECYCLE_QUEUE, async (events) => {
      for (const event of events) {
        const key = unpack(event.data) as ExpiredKey;
        await submit({
          op: "expireKey",
          volume: key.volume,
          bucket: key.bucket,
          key: key.key,
          objectId: key.objectId,
        });
      }
    });
    return consumer;
  };
  return {
    add: async (keys) => {
      await ensure().add(
        keys.map((k) => pack({ volume: k.volume, bucket: k.bucket, key: k.key, objectId: k.objectId })),
      );
    },
    resume: () => {
      if (readMeta(store, LIFECYCLE_QUEUE)) ensure();
    },
  };
}

/**
 * A node's services: the manager that runs them while the node is the ready leader, the
 * built-in ones (the lifecycle service), and what `metaraft service ls` shows.
 */
export class NodeServices {
  readonly manager: ServiceManager;
  readonly lifecycle: LifecycleService;
  readonly #store: StateStore;

  constructor(parts: {
    nodeId: number;
    store: StateStore;
    pipeline: WritePipeline;
    leadership: Leadership;
    runtime: Runtime;
    expiry: (submit: Submit) => ExpiryQueue;
    lifecycle: { tickMs: number; pageKeys: number; passIntervalMs: number };
  }) {
    this.#store = parts.store;
    const clientId = `services-${randomUUID()}`;
    let callId = 0;
    const submit: Submit = (request) => parts.pipeline.submit(clientId, callId++, request);
    this.manager = new ServiceManager({
      leadership: parts.leadership,
      runtime: parts.runtime,
      nodeId: parts.nodeId,
    });
    this.lifecycle = new LifecycleService(
      { reader: parts.store, submit },
      { runtime: parts.runtime, queue: parts.expiry(submit), ...parts.lifecycle },
    );
    this.manager.register(this.lifecycle);
  }

  start(): void {
    this.manager.start();
  }

  /** `service ls`: every service with its state here (the leader's is the one that runs), its configuration and progress. */
  list(): { services: (ServiceStatus & { config: unknown; changedTxid?: number })[] } {
    const records = new Map(listServiceConfigs(this.#store).map((r) => [r.name, r]));
    return {
      services: this.manager.statuses().map((status) => {
        const record = records.get(status.name);
        return {
          ...status,
          config: record?.config ?? null,
          ...(record ? { changedTxid: record.changedTxid, progress: record.progress } : {}),
        };
      }),
    };
  }

  /** A service's name as a request names it, checked against the ones this node runs. */
  known(name: unknown): string {
    if (typeof name !== "string" || !this.manager.get(name)) {
      throw new MetaraftError("MR_ERR_SERVICE_NOT_FOUND", `no service ${String(name)}`);
    }
    return name;
  }

  async close(): Promise<void> {
    await this.manager.close();
  }
}
