import { Piscina } from "piscina";
import { MetaraftError } from "../errors.js";
import type { PoolFailure, PoolTask } from "./pool-task.js";
import { unpack } from "./pool-task.js";
import { wasmCore } from "./wasm.js";

/**
 * Runs one pool task on this worker's WASM core (instantiated once per worker). Results go
 * back as one moved buffer; Piscina only honours `move` on the top-level return value.
 */
export default function runTask(task: PoolTask): unknown {
  try {
    const core = wasmCore();
    switch (task.op) {
      case "crc32c":
        return core.crc32c(task.data, task.seed);
      case "encodeFrames":
        return Piscina.move(core.encodeFrames(unpack(task.data, task.lengths), task.max));
      case "splitFrames": {
        const split = core.splitFrames(task.data, task.max);
        const packed = new Uint32Array(2 * split.count);
        packed.set(split.starts);
        packed.set(split.lengths, split.count);
        return Piscina.move(packed);
      }
      case "encodeDeltas":
        return Piscina.move(core.encodeDeltas(task.values));
      case "decodeDeltas":
        return Piscina.move(core.decodeDeltas(task.data));
      case "encodeKeys":
        return Piscina.move(core.encodeKeys(unpack(task.data, task.lengths)));
      case "decodeKeys": {
        const keys = core.decodeKeys(task.data, task.max);
        // One buffer: u32 count, the u32 lengths, then the key bytes (already contiguous).
        const bytes = keys.length === 0 ? new Uint8Array(0) : new Uint8Array(keys[0]!.buffer);
        const packed = new Uint8Array(4 + 4 * keys.length + bytes.length);
        const view = new DataView(packed.buffer);
        view.setUint32(0, keys.length, true);
        for (let i = 0; i < keys.length; i++) view.setUint32(4 + 4 * i, keys[i]!.length, true);
        packed.set(bytes, 4 + 4 * keys.length);
        return Piscina.move(packed);
      }
      case "mergeWriteSets":
        return Piscina.move(core.mergeWriteSets([task.data]));
      case "allocateIndexes": {
        const { txids, objectIds } = core.allocateIndexes(task.base, task.counts);
        return Piscina.move(new Float64Array(txids.buffer, 0, txids.length + objectIds.length));
      }
    }
  } catch (error) {
    const failure: PoolFailure = {
      error:
        error instanceof MetaraftError ? error.toJSON() : { code: "MR_ERR_INTERNAL", message: String(error) },
    };
    return failure;
  }
}
