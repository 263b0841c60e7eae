import { randomUUID } from "node:crypto";
import { MetaraftError } from "../errors.js";
import type { WritePipeline } from "../execution/pipeline.js";
import type { StateStore } from "../execution/state-store.js";
import type { Leadership } from "../host/index.js";
import type { Runtime } from "../runtime.js";
import {
  type ExpiryQueue,
  LifecycleService,
  listServiceConfigs,
  ServiceManager,
  type ServiceStatus,
  type Submit,
} from "../services/index.js";

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
