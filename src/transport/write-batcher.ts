import type { Socket } from "node:net";
import { tsCore } from "../core/index.js";
import { type Runtime, systemRuntime } from "../runtime.js";
import type { FrameCore } from "./framing.js";

export const WRITE_BATCH_MESSAGES_MAX = 1024;
/** A frame's header: u32 length, u8 version, u32 crc32c. */
const FRAME_HEADER_BYTES = 9;

/**
 * Collects the payloads written to one socket during a turn of the event loop and frames them
 * into one buffer and one write: a storm of small responses costs one syscall, not hundreds.
 */
export class WriteBatcher {
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #scheduled = false;
  /** Told once the pending payloads are written out (their flush's write completes). */
  #flushWaiters: (() => void)[] = [];
  /** Told once the last flush's write completes; undefined when no write is in progress. */
  #writing: (() => void)[] | undefined;

  constructor(
    readonly socket: Socket,
    readonly frameBytesMax: number,
    readonly core: FrameCore = tsCore,
    readonly runtime: Runtime = systemRuntime,
  ) {}

  /**
   * Bytes written here and not yet taken by the kernel: framed and waiting for this turn's
   * flush, or in the socket's own buffer. A producer that must not grow a slow reader's buffer
   * (a watch) checks it before it writes more.
   */
  get bufferedBytes(): number {
    return this.#pendingBytes + this.socket.writableLength;
  }

  write(payload: Uint8Array): void {
    this.#pending.push(payload);
    this.#pendingBytes += payload.length + FRAME_HEADER_BYTES;
    if (this.#pending.length >= WRITE_BATCH_MESSAGES_MAX) {
      this.flush();
      return;
    }
    if (!this.#scheduled) {
      this.#scheduled = true;
      this.runtime.defer(() => this.flush());
    }
  }

  /**
   * Runs `fn` once everything written so far has been handed to the kernel: the socket's write
   * callback, not its `drain` event, which a write the kernel took at once never emits. Never
   * runs if the socket is destroyed first.
   */
  whenWritten(fn: () => void): void {
    if (this.#pending.length > 0) this.#flushWaiters.push(fn);
    else if (this.#writing) this.#writing.push(fn);
    else this.runtime.defer(fn);
  }

  flush(): void {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    const waiters = this.#flushWaiters;
    this.#flushWaiters = [];
    if (this.socket.destroyed) return;
    // Writes complete in order: the last one's callback says every earlier one is out too.
    this.#writing = waiters;
    this.socket.write(this.core.encodeFrames(batch, this.frameBytesMax), (error) => {
      if (this.#writing === waiters) this.#writing = undefined;
      if (error) return;
      for (const fn of waiters) fn();
    });
  }
}
