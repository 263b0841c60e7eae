import type { HostTransport } from "../../../src/host/index.js";
import type { NodeId } from "../../../src/raft/index.js";
import type { SimRuntime } from "./runtime.js";

export interface NetworkFaults {
  /** Chance a message is lost. */
  readonly dropRate: number;
  /** Chance a message is delivered twice. */
  readonly duplicateRate: number;
  /** Delivery takes 1 to this many virtual ms (messages overtake one another). */
  readonly delayMaxMs: number;
}

/**
 * A network of `HostTransport`s on a virtual clock: every message is delayed, and may be lost,
 * duplicated or reordered; a partition cuts links one way or both. Counts the bytes sent on each
 * link, as the peer transport's counters do.
 */
export class SimNetwork {
  readonly #handlers = new Map<NodeId, (from: NodeId, payload: Uint8Array) => void>();
  /** Directed links that are cut: `from>to`. */
  readonly #cut = new Set<string>();
  /** Bytes handed to the network per directed link, delivered or not. */
  readonly sentBytes = new Map<string, number>();
  delivered = 0;
  dropped = 0;

  constructor(
    readonly runtime: SimRuntime,
    public faults: NetworkFaults,
  ) {}

  /** The transport of node `id`; a restarted node takes a fresh one (its old handler is dropped). */
  transport(id: NodeId): HostTransport {
    const network = this;
    return {
      send(to: NodeId, payload: Uint8Array): boolean {
        network.#send(id, to, payload);
        return true;
      },
      onMessage(handler) {
        network.#handlers.set(id, handler);
      },
    };
  }

  /** A crashed node receives nothing until its next incarnation registers a handler. */
  detach(id: NodeId): void {
    this.#handlers.delete(id);
  }

  cut(from: NodeId, to: NodeId): void {
    this.#cut.add(`${from}>${to}`);
  }

  heal(): void {
    this.#cut.clear();
  }

  get partitioned(): boolean {
    return this.#cut.size > 0;
  }

  #send(from: NodeId, to: NodeId, payload: Uint8Array): void {
    const link = `${from}>${to}`;
    this.sentBytes.set(link, (this.sentBytes.get(link) ?? 0) + payload.length);
    const random = this.runtime.random;
    if (this.#cut.has(link) || random() < this.faults.dropRate) {
      this.dropped++;
      return;
    }
    const copies = random() < this.faults.duplicateRate ? 2 : 1;
    // The receiver may keep what it is given: each delivery gets its own copy.
    const bytes = new Uint8Array(payload);
    for (let i = 0; i < copies; i++) {
      const delay = 1 + Math.floor(random() * this.faults.delayMaxMs);
      this.runtime.after(delay, () => {
        if (this.#cut.has(link)) {
          this.dropped++;
          return;
        }
        const handler = this.#handlers.get(to);
        if (!handler) return;
        this.delivered++;
        handler(from, bytes);
      });
    }
  }
}
