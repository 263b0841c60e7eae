import { readFileSync } from "node:fs";
import { MetaraftError } from "../errors.js";
import { codeOfStatus } from "./status.js";
import { unpackSplit } from "./twin/frames.js";
import { concat } from "./twin/writeset.js";
import {
  type CoreSync,
  FRAME_BYTES_MAX_DEFAULT,
  FRAME_HEADER_BYTES,
  type FrameSplit,
  type IndexAllocation,
  KEYS_DECODED_BYTES_MAX_DEFAULT,
} from "./types.js";
import { checkFrameEvents, checkIndexArgs, checkLimit } from "./validate.js";

/** The module's exports, as docs/core-formats.md ("The WASM ABI") defines them. */
interface CoreExports {
  readonly memory: WebAssembly.Memory;
  _start(): void;
  arenaBase(): number;
  errorOffset(): number;
  crc32c(ptr: number, len: number, seed: number): number;
  framesSeal(ptr: number, len: number): number;
  framesSplit(ptr: number, len: number, maxFrameBytes: number, outPtr: number): number;
  deltasEncode(valuesPtr: number, count: number, outPtr: number): number;
  deltasCount(ptr: number, len: number): number;
  deltasDecode(ptr: number, len: number, outPtr: number): number;
  keysEncode(bytesPtr: number, lengthsPtr: number, count: number, outPtr: number): number;
  keysDecodedSize(ptr: number, len: number, decodedBytesMax: number): number;
  keysDecode(ptr: number, len: number, bytesOutPtr: number, lengthsOutPtr: number): number;
  writeSetsMerge(ptr: number, len: number, outPtr: number, scratchPtr: number): number;
  indexAllocate(baseTxid: number, countsPtr: number, n: number, outPtr: number): number;
}

const PAGE_BYTES = 65536;
/** The arena never grows past this; a larger call is refused rather than taking the heap. */
export const WASM_ARENA_BYTES_MAX = 1024 * 1024 * 1024;

export const wasmPath = new URL("../../../build/core.wasm", import.meta.url);

const align8 = (n: number): number => (n + 7) & ~7;

function invariant(condition: boolean, what: string): asserts condition {
  if (!condition) throw new MetaraftError("MR_ERR_INTERNAL", `WASM core invariant broken: ${what}`);
}

/**
 * The WASM implementation. Following undici's llhttp host: instantiated once per thread, one
 * arena at the end of linear memory reused by every call, views rebuilt after the memory grows,
 * negative statuses mapped to registry errors here.
 */
export class WasmCore implements CoreSync {
  readonly impl = "wasm" as const;
  readonly #exports: CoreExports;
  readonly #base: number;
  #bytes: Uint8Array;

  constructor(module: WebAssembly.Module) {
    const instance = new WebAssembly.Instance(module, {});
    this.#exports = instance.exports as unknown as CoreExports;
    this.#exports._start();
    this.#base = this.#exports.arenaBase();
    invariant(this.#base % 16 === 0, "arena base is 16-aligned");
    this.#bytes = new Uint8Array(this.#exports.memory.buffer);
  }

  /** Linear memory in bytes: it only grows, to the largest call seen. */
  get memoryBytes(): number {
    return this.#exports.memory.buffer.byteLength;
  }

  /** Makes `bytes` of arena available from the base and returns the base. */
  #reserve(bytes: number): number {
    const need = this.#base + bytes;
    if (need > this.#base + WASM_ARENA_BYTES_MAX) {
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `input needs ${bytes} bytes of WASM arena`);
    }
    const memory = this.#exports.memory;
    if (need > memory.buffer.byteLength) {
      memory.grow(Math.ceil((need - memory.buffer.byteLength) / PAGE_BYTES));
      this.#bytes = new Uint8Array(memory.buffer);
    }
    return this.#base;
  }

  #check(status: number): number {
    if (status < 0) {
      throw new MetaraftError(codeOfStatus(status), undefined, { offset: this.#exports.errorOffset() });
    }
    return status;
  }

  #f64(ptr: number, count: number): Float64Array {
    return new Float64Array(this.#exports.memory.buffer, ptr, count);
  }

  #u32(ptr: number, count: number): Uint32Array {
    return new Uint32Array(this.#exports.memory.buffer, ptr, count);
  }

  #copyIn(data: Uint8Array, extraBytes: number): number {
    const ptr = this.#reserve(data.length + extraBytes);
    this.#bytes.set(data, ptr);
    return ptr;
  }

  crc32c(data: Uint8Array, seed = 0): number {
    const ptr = this.#copyIn(data, 0);
    return this.#exports.crc32c(ptr, data.length, seed) >>> 0;
  }

  encodeFrames(events: readonly Uint8Array[], maxFrameBytes = FRAME_BYTES_MAX_DEFAULT): Uint8Array {
    const total = checkFrameEvents(events, maxFrameBytes);
    const ptr = this.#reserve(total);
    const bytes = this.#bytes;
    const view = new DataView(bytes.buffer);
    let p = ptr;
    for (const event of events) {
      view.setUint32(p, event.length, true);
      bytes.set(event, p + FRAME_HEADER_BYTES);
      p += FRAME_HEADER_BYTES + event.length;
    }
    const count = this.#check(this.#exports.framesSeal(ptr, total));
    invariant(count === events.length, "framesSeal sealed every event");
    return bytes.slice(ptr, ptr + total);
  }

  splitFrames(buf: Uint8Array, maxFrameBytes = FRAME_BYTES_MAX_DEFAULT): FrameSplit {
    checkLimit("maxFrameBytes", maxFrameBytes);
    const outOffset = align8(buf.length);
    const pairsMax = Math.floor(buf.length / FRAME_HEADER_BYTES);
    const ptr = this.#copyIn(buf, outOffset - buf.length + 8 * pairsMax);
    const count = this.#check(this.#exports.framesSplit(ptr, buf.length, maxFrameBytes, ptr + outOffset));
    invariant(count <= pairsMax, "frame count within its bound");
    return unpackSplit(this.#u32(ptr + outOffset, 2 * count), count);
  }

  encodeDeltas(values: ArrayLike<number>): Uint8Array {
    const n = values.length;
    const outOffset = 8 * n;
    const ptr = this.#reserve(outOffset + 5 + 8 * n);
    this.#f64(ptr, n).set(values);
    const written = this.#check(this.#exports.deltasEncode(ptr, n, ptr + outOffset));
    invariant(written <= 5 + 8 * n, "deltas within their bound");
    return this.#bytes.slice(ptr + outOffset, ptr + outOffset + written);
  }

  decodeDeltas(buf: Uint8Array): Float64Array {
    const ptr = this.#copyIn(buf, 0);
    const count = this.#check(this.#exports.deltasCount(ptr, buf.length));
    invariant(count <= buf.length, "delta count bounded by the input");
    const outOffset = align8(buf.length);
    this.#reserve(outOffset + 8 * count);
    const decoded = this.#check(this.#exports.deltasDecode(ptr, buf.length, ptr + outOffset));
    invariant(decoded === count, "decoded the announced count");
    return this.#f64(ptr + outOffset, count).slice();
  }

  encodeKeys(keys: readonly Uint8Array[]): Uint8Array {
    const n = keys.length;
    const keyBytes = concat(keys.length === 0 ? [new Uint8Array(0)] : keys);
    const lengthsOffset = align8(keyBytes.length);
    const outOffset = lengthsOffset + 4 * n;
    const bound = 5 + 10 * n + keyBytes.length;
    const ptr = this.#copyIn(keyBytes, outOffset - keyBytes.length + bound);
    const lengths = this.#u32(ptr + lengthsOffset, n);
    for (let i = 0; i < n; i++) lengths[i] = keys[i]!.length;
    const written = this.#check(this.#exports.keysEncode(ptr, ptr + lengthsOffset, n, ptr + outOffset));
    invariant(written <= bound, "front-coded keys within their bound");
    return this.#bytes.slice(ptr + outOffset, ptr + outOffset + written);
  }

  decodeKeys(buf: Uint8Array, decodedBytesMax = KEYS_DECODED_BYTES_MAX_DEFAULT): Uint8Array[] {
    checkLimit("decodedBytesMax", decodedBytesMax);
    const ptr = this.#copyIn(buf, 0);
    const total = this.#check(this.#exports.keysDecodedSize(ptr, buf.length, decodedBytesMax));
    invariant(total <= decodedBytesMax, "decoded size within its limit");
    const lengthsOffset = align8(buf.length);
    const countMax = Math.floor(buf.length / 2);
    const bytesOffset = lengthsOffset + 4 * countMax;
    this.#reserve(bytesOffset + total);
    const count = this.#check(
      this.#exports.keysDecode(ptr, buf.length, ptr + bytesOffset, ptr + lengthsOffset),
    );
    invariant(count <= countMax, "key count within its bound");
    const out = this.#bytes.slice(ptr + bytesOffset, ptr + bytesOffset + total);
    const lengths = this.#u32(ptr + lengthsOffset, count);
    const keys = new Array<Uint8Array>(count);
    let q = 0;
    for (let i = 0; i < count; i++) {
      keys[i] = out.subarray(q, q + lengths[i]!);
      q += lengths[i]!;
    }
    invariant(q === total, "key lengths add up to the decoded size");
    return keys;
  }

  mergeWriteSets(writeSets: readonly Uint8Array[]): Uint8Array {
    const buf = concat(writeSets.length === 0 ? [new Uint8Array(0)] : writeSets);
    const outOffset = align8(buf.length);
    const scratchOffset = outOffset + align8(buf.length);
    const scratchBytes = 16 * (Math.floor(buf.length / 8) + 1);
    const ptr = this.#copyIn(buf, scratchOffset - buf.length + scratchBytes);
    const written = this.#check(
      this.#exports.writeSetsMerge(ptr, buf.length, ptr + outOffset, ptr + scratchOffset),
    );
    invariant(written <= buf.length, "a merge never grows the write-set");
    return this.#bytes.slice(ptr + outOffset, ptr + outOffset + written);
  }

  allocateIndexes(baseTxid: number, objectCounts: ArrayLike<number>): IndexAllocation {
    const objects = checkIndexArgs(baseTxid, objectCounts);
    const n = objectCounts.length;
    const outOffset = align8(4 * n);
    const ptr = this.#reserve(outOffset + 8 * (n + objects));
    this.#u32(ptr, n).set(objectCounts);
    const written = this.#check(this.#exports.indexAllocate(baseTxid, ptr, n, ptr + outOffset));
    invariant(written === objects, "one object id per requested object");
    const out = this.#f64(ptr + outOffset, n + objects).slice();
    return { txids: out.subarray(0, n), objectIds: out.subarray(n) };
  }
}

let compiled: WebAssembly.Module | undefined;
let shared: WasmCore | undefined;
let loadError: MetaraftError | undefined;

/** The thread's WASM core, compiled and instantiated on first use. */
export function wasmCore(): WasmCore {
  if (shared) return shared;
  if (loadError) throw loadError;
  try {
    compiled ??= new WebAssembly.Module(readFileSync(wasmPath));
    shared = new WasmCore(compiled);
    return shared;
  } catch (cause) {
    loadError = new MetaraftError("MR_ERR_WASM_UNAVAILABLE", `${wasmPath.pathname}: ${String(cause)}`, {
      cause,
    });
    throw loadError;
  }
}
