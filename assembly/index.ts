// WASM core entry: re-exports the ABI from docs/core-formats.md. Built with --runtime stub;
// nothing here allocates. The host calls _start once (fills the CRC tables) before use.

export function arenaBase(): usize {
  return (__heap_base + 15) & ~15;
}

export { crc32c } from "./crc";
export { deltasCount, deltasDecode, deltasEncode } from "./deltas";
export { framesSeal, framesSplit } from "./frames";
export { indexAllocate } from "./index-gen";
export { keysDecode, keysDecodedSize, keysEncode } from "./keys";
export { errorOffset } from "./util";
export { writeSetsMerge } from "./writeset";
