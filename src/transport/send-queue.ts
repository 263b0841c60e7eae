import { FRAME_HEADER_BYTES } from "../core/index.js";
import { MetaraftError } from "../errors.js";

/**
 * The messages waiting for one peer, oldest first, bounded both in count and in bytes. A
 * message counts its frame size (payload + header), so a flood of empty payloads is bounded by
 * the count and a few huge ones by the bytes. Full means refuse: Raft retransmits what it
 * needs, and a queue that grows without bound would only delay the loss.
 */
export class SendQueue {
  readonly bytesMax: number;
  readonly messagesMax: number;
  /** Items before `#head` are taken (set to undefined); compacted once they are half the array. */
  #items: (Uint8Array | undefined)[] = [];
  #head = 0;
  #bytes = 0;

  constructor(bytesMax: number, messagesMax: number) {
    if (!(Number.isSafeInteger(bytesMax) && bytesMax > 0)) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `sendQueueBytesMax must be a positive integer: ${bytesMax}`,
      );
    }
    if (!(Number.isSafeInteger(messagesMax) && messagesMax > 0)) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `sendQueueMessagesMax must be a positive integer: ${messagesMax}`,
      );
    }
    this.bytesMax = bytesMax;
    this.messagesMax = messagesMax;
  }

  get messages(): number {
    return this.#items.length - this.#head;
  }

  /** Frame bytes queued: the sum of `payload.length + FRAME_HEADER_BYTES`. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Appends, or returns false and leaves the queue as it was when either bound would be passed. */
  push(payload: Uint8Array): boolean {
    const size = payload.length + FRAME_HEADER_BYTES;
    if (this.messages >= this.messagesMax || this.#bytes + size > this.bytesMax) return false;
    this.#items.push(payload);
    this.#bytes += size;
    return true;
  }

  /**
   * Removes and returns the oldest messages, as many as fit in `bytesMax` and `messagesMax`, but
   * always at least one when the queue is not empty (a message larger than a batch goes alone).
   */
  take(bytesMax: number, messagesMax: number): Uint8Array[] {
    const batch: Uint8Array[] = [];
    let bytes = 0;
    while (this.#head < this.#items.length && batch.length < messagesMax) {
      const payload = this.#items[this.#head]!;
      const size = payload.length + FRAME_HEADER_BYTES;
      if (batch.length > 0 && bytes + size > bytesMax) break;
      batch.push(payload);
      bytes += size;
      this.#items[this.#head] = undefined;
      this.#head++;
    }
    this.#bytes -= bytes;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && 2 * this.#head >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return batch;
  }

  /** Empties the queue; returns how many messages were discarded. */
  clear(): number {
    const discarded = this.messages;
    this.#items = [];
    this.#head = 0;
    this.#bytes = 0;
    return discarded;
  }
}
