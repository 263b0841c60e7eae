import { availableParallelism } from "node:os";
import { Piscina } from "piscina";
import { MetaraftError } from "../errors.js";
import type { PoolTask } from "./pool-task.js";
import {
  type CoreAsync,
  FRAME_BYTES_MAX_DEFAULT,
  type FrameSplit,
  type IndexAllocation,
  KEYS_DECODED_BYTES_MAX_DEFAULT,
} from "./types.js";
import { checkFrameEvents, checkIndexArgs, checkLimit } from "./validate.js";

export interface PoolOptions {
  /** Worker threads; default: the cores, at most 4. */
  readonly threads?: number;
  /** Tasks that may wait for a worker before `run` fails with POOL_QUEUE_FULL. */
  readonly queueMax?: number;
}

export const POOL_THREADS_MAX_DEFAULT = 4;
export const POOL_QUEUE_MAX_DEFAULT = 1024;

/** A private copy the worker may take: transferring the caller's own buffer would detach it. */
function transferable(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  let size = 0;
  for (const part of parts) size += part.length;
  const copy = new Uint8Array(size);
  let p = 0;
  for (const part of parts) {
    copy.set(part, p);
    p += part.length;
  }
  return copy;
}

/**
 * The WASM core in a Piscina pool, for work large enough to be worth a thread hop (about 35 µs
 * a round trip). Inputs are copied once into buffers that are moved, never cloned, and results
 * come back the same way.
 */
export class CorePool implements CoreAsync {
  readonly impl = "pool" as const;
  readonly #piscina: Piscina;
  #closed = false;

  constructor(options: PoolOptions = {}) {
    const threads = options.threads ?? Math.min(availableParallelism(), POOL_THREADS_MAX_DEFAULT);
    this.#piscina = new Piscina({
      filename: new URL("./pool-worker.js", import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      maxQueue: options.queueMax ?? POOL_QUEUE_MAX_DEFAULT,
      idleTimeout: 60_000,
    });
  }

  get threads(): number {
    return this.#piscina.threads.length;
  }

  async #run(task: PoolTask, transferList: ArrayBuffer[]): Promise<unknown> {
    if (this.#closed) throw new MetaraftError("MR_ERR_POOL_CLOSED");
    let result: unknown;
    try {
      result = await this.#piscina.run(task, { transferList });
    } catch (cause) {
      if (this.#closed) throw new MetaraftError("MR_ERR_POOL_CLOSED", undefined, { cause });
      const queueFull = String(cause).includes("queue");
      throw new MetaraftError(queueFull ? "MR_ERR_POOL_QUEUE_FULL" : "MR_ERR_INTERNAL", String(cause), {
        cause,
      });
    }
    if (typeof result === "object" && result !== null && "error" in result) {
      throw MetaraftError.fromJSON(result.error);
    }
    return result;
  }

  async crc32c(data: Uint8Array, seed = 0): Promise<number> {
    const copy = transferable([data]);
    return (await this.#run({ op: "crc32c", data: copy, seed }, [copy.buffer])) as number;
  }

  async encodeFrames(
    events: readonly Uint8Array[],
    maxFrameBytes = FRAME_BYTES_MAX_DEFAULT,
  ): Promise<Uint8Array> {
    checkFrameEvents(events, maxFrameBytes);
    const data = transferable(events);
    const lengths = Uint32Array.from(events, (event) => event.length);
    return (await this.#run({ op: "encodeFrames", data, lengths, max: maxFrameBytes }, [
      data.buffer,
      lengths.buffer,
    ])) as Uint8Array;
  }

  async splitFrames(buf: Uint8Array, maxFrameBytes = FRAME_BYTES_MAX_DEFAULT): Promise<FrameSplit> {
    checkLimit("maxFrameBytes", maxFrameBytes);
    const data = transferable([buf]);
    const packed = (await this.#run({ op: "splitFrames", data, max: maxFrameBytes }, [
      data.buffer,
    ])) as Uint32Array;
    const count = packed.length / 2;
    return { count, starts: packed.subarray(0, count), lengths: packed.subarray(count) };
  }

  async encodeDeltas(values: ArrayLike<number>): Promise<Uint8Array> {
    const copy = Float64Array.from(values);
    return (await this.#run({ op: "encodeDeltas", values: copy }, [copy.buffer])) as Uint8Array;
  }

  async decodeDeltas(buf: Uint8Array): Promise<Float64Array> {
    const data = transferable([buf]);
    return (await this.#run({ op: "decodeDeltas", data }, [data.buffer])) as Float64Array;
  }

  async encodeKeys(keys: readonly Uint8Array[]): Promise<Uint8Array> {
    const data = transferable(keys);
    const lengths = Uint32Array.from(keys, (key) => key.length);
    return (await this.#run({ op: "encodeKeys", data, lengths }, [
      data.buffer,
      lengths.buffer,
    ])) as Uint8Array;
  }

  async decodeKeys(buf: Uint8Array, decodedBytesMax = KEYS_DECODED_BYTES_MAX_DEFAULT): Promise<Uint8Array[]> {
    checkLimit("decodedBytesMax", decodedBytesMax);
    const data = transferable([buf]);
    const packed = (await this.#run({ op: "decodeKeys", data, max: decodedBytesMax }, [
      data.buffer,
    ])) as Uint8Array;
    const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
    const count = view.getUint32(0, true);
    const keys = new Array<Uint8Array>(count);
    let q = 4 + 4 * count;
    for (let i = 0; i < count; i++) {
      const length = view.getUint32(4 + 4 * i, true);
      keys[i] = packed.subarray(q, q + length);
      q += length;
    }
    return keys;
  }

  async mergeWriteSets(writeSets: readonly Uint8Array[]): Promise<Uint8Array> {
    const data = transferable(writeSets);
    return (await this.#run({ op: "mergeWriteSets", data }, [data.buffer])) as Uint8Array;
  }

  async allocateIndexes(baseTxid: number, objectCounts: ArrayLike<number>): Promise<IndexAllocation> {
    checkIndexArgs(baseTxid, objectCounts);
    const counts = Float64Array.from(objectCounts);
    const n = counts.length; // read before the transfer detaches `counts`
    const out = (await this.#run({ op: "allocateIndexes", base: baseTxid, counts }, [
      counts.buffer,
    ])) as Float64Array;
    return { txids: out.subarray(0, n), objectIds: out.subarray(n) };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#piscina.destroy();
  }
}
