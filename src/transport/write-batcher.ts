import type { Socket } from "node:net";
import { tsCore } from "../core/index.js";
import { type Runtime, systemRuntime } from "../runtime.js";
import type { FrameCore } from "./framing.js";

export const WRITE_BATCH_MESSAGES_MAX = 1024;

/**
 * Collects the payloads written to one socket during a turn of the event loop and frames them
 * into one buffer and one write: a storm of small responses costs one syscall, not hundreds.
 */
export class WriteBatcher {
  #pending: Uint8Array[] = [];
  #scheduled = false;

  constructor(
    readonly socket: Socket,
    readonly frameBytesMax: number,
    readonly core: FrameCore = tsCore,
    readonly runtime: Runtime = systemRuntime,
  ) {}

  write(payload: Uint8Array): void {
    this.#pending.push(payload);
    if (this.#pending.length >= WRITE_BATCH_MESSAGES_MAX) {
      this.flush();
      return;
    }
    if (!this.#scheduled) {
      this.#scheduled = true;
      this.runtime.defer(() => this.flush());
    }
  }

  flush(): void {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    if (!this.socket.destroyed) this.socket.write(this.core.encodeFrames(batch, this.frameBytesMax));
  }
}
