import { MemoryStateDisk, type MemoryStateDiskOptions } from "../storage/index.js";
import { StateStore, type StateStoreOptions } from "./state-store.js";

/**
 * The production `StateStore` over a `MemoryStateDisk`: the simulator's state machine. It adds
 * nothing to the store but its disk and a crash, so the code the simulator runs is the node's.
 */
export class MemoryStateStore extends StateStore {
  readonly disk: MemoryStateDisk;
  readonly #options: StateStoreOptions;

  /** A store over `disk` (default: a new, empty one whose commits land on `options.defer`). */
  constructor(disk?: MemoryStateDisk, options: StateStoreOptions = {}) {
    const own = disk ?? new MemoryStateDisk(diskOptions(options));
    super(own, options);
    this.disk = own;
    this.#options = options;
  }

  /**
   * The store a restart after a crash now would open: over the disk as the crash left it (see
   * `MemoryStateDisk.crash`), so its applied index is the one the surviving meta records, and
   * the node re-applies the entries above it from its log. This store is dead afterwards.
   */
  crash(keepUnsynced = 0): MemoryStateStore {
    return new MemoryStateStore(this.disk.crash(keepUnsynced), this.#options);
  }
}

function diskOptions(options: StateStoreOptions): MemoryStateDiskOptions {
  return options.defer ? { defer: options.defer } : {};
}
