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
 * A network of `HostTransport`s on a virtual clock: every message is delayed, and may be lost or
 * duplicated; messages on one link keep their order (TCP), different links overtake one another;
 * a partition cuts links one way or both. Counts the bytes sent on each
 * link, as the peer transport's counters do.
 */
export class SimNetwork {
  readonly #handlers = new Map<NodeId, (from: NodeId, payload: Uint8Array) => void>();
  /** Directed links that are cut: `from>to`. */
  readonly #cut = new Set<string>();
  /** When the last message on each link arrives: later ones arrive no earlier. */
  readonly #lastAt = new Map<string, number>();
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
      // In order per link, as over the TCP connection of the peer transport (a state copy's
      // pieces rely on it); the delay varies, so links overtake one another.
      const at = Math.max(
        this.runtime.time + 1 + Math.floor(random() * this.faults.delayMaxMs),
        this.#lastAt.get(link) ?? 0,
      );
      this.#lastAt.set(link, at);
      this.runtime.after(at - this.runtime.time, () => {
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
