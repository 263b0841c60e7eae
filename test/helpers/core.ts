import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  type CoreAsync,
  CorePool,
  type CoreSync,
  MetaraftError,
  tsCore,
  wasmCore,
} from "../../src/core/index.js";

/** Adapts a synchronous core to the asynchronous interface so one test drives all three. */
export function asAsync(core: CoreSync): CoreAsync {
  return {
    impl: core.impl === "auto" ? "auto" : core.impl,
    crc32c: async (...a) => core.crc32c(...a),
    encodeFrames: async (...a) => core.encodeFrames(...a),
    splitFrames: async (...a) => core.splitFrames(...a),
    encodeDeltas: async (...a) => core.encodeDeltas(...a),
    decodeDeltas: async (...a) => core.decodeDeltas(...a),
    encodeKeys: async (...a) => core.encodeKeys(...a),
    decodeKeys: async (...a) => core.decodeKeys(...a),
    mergeWriteSets: async (...a) => core.mergeWriteSets(...a),
    allocateIndexes: async (...a) => core.allocateIndexes(...a),
  };
}

export interface Implementations {
  readonly all: readonly CoreAsync[];
  close(): Promise<void>;
}

/** The three implementations: pure TypeScript, WASM inline, and WASM in a two-thread pool. */
export function implementations(): Implementations {
  const pool = new CorePool({ threads: 2 });
  return { all: [asAsync(tsCore), asAsync(wasmCore()), pool], close: () => pool.close() };
}

export const vectorsDir = new URL("../../../test/vectors/", import.meta.url);

export function loadVectors<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(name, vectorsDir), "utf8")) as T;
}

export const fromHex = (hex: string): Uint8Array =>
  new Uint8Array(Buffer.from(hex.replace(/\s+/g, ""), "hex"));
export const toHex = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex");
export const ascii = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, "latin1"));

/** What a call came to: its value, or the registry code and offset it failed with. */
export type Outcome<T> = { readonly ok: T } | { readonly code: string; readonly offset: number | undefined };

/** Runs `call`; anything thrown that is not a MetaraftError fails the test. */
export async function outcome<T>(call: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: await call() };
  } catch (error) {
    if (!(error instanceof MetaraftError)) {
      assert.fail(`threw something other than a MetaraftError: ${String(error)}`);
    }
    return { code: error.code, offset: error.offset };
  }
}

export async function assertFails(
  call: () => Promise<unknown>,
  code: string,
  offset: number | undefined,
  label: string,
): Promise<void> {
  const result = await outcome(call);
  assert.deepEqual(result, { code, offset }, label);
}
