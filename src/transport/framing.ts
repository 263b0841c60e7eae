import {
  type CoreSync,
  FRAME_BYTES_MAX_DEFAULT,
  FRAME_HEADER_BYTES,
  FRAME_VERSION,
  tsCore,
} from "../core/index.js";
import { MetaraftError } from "../errors.js";

/**
 * Frames on a byte stream. A TCP stream delivers the frames of docs/core-formats.md cut at
 * arbitrary points; the decoder reassembles them one at a time and checks each exactly as
 * `splitFrames` does (length bound, version, CRC32C), reporting the first bad frame as an error
 * with its registry code. It never waits for the rest of a frame it will reject: the length and
 * the version are checked as soon as the 9-byte header is in.
 */

/** The part of the core the framing uses; `createCore().sync` or `wasmCore()` fit, as does `tsCore`. */
export type FrameCore = Pick<CoreSync, "crc32c" | "encodeFrames">;

export interface FrameDecoderOptions {
  /** The largest payload accepted; a header announcing more is `FRAME_TOO_LARGE`. */
  readonly frameBytesMax?: number;
  /**
   * Receives each verified payload, in stream order. The payload is a fresh copy that the
   * decoder never touches again (a view would pin the socket's whole read buffer).
   */
  readonly onFrame: (payload: Uint8Array) => void;
  readonly core?: Pick<CoreSync, "crc32c">;
}

export class FrameDecoder {
  readonly #onFrame: (payload: Uint8Array) => void;
  readonly #core: Pick<CoreSync, "crc32c">;
  #frameBytesMax: number;
  /** The header being read; `#headerFill` of its bytes are in. */
  readonly #header = new Uint8Array(FRAME_HEADER_BYTES);
  readonly #headerView = new DataView(this.#header.buffer);
  #headerFill = 0;
  /** The payload being read once its header passed: exactly `length <= #frameBytesMax` bytes. */
  #payload: Uint8Array | undefined;
  #payloadFill = 0;
  #payloadCrc = 0;
  /** Stream offset of the current frame's first header byte (the error offset). */
  #frameStart = 0;
  #error: MetaraftError | undefined;
  #halted = false;

  constructor(options: FrameDecoderOptions) {
    this.#onFrame = options.onFrame;
    this.#core = options.core ?? tsCore;
    this.#frameBytesMax = checkFrameBytesMax(options.frameBytesMax ?? FRAME_BYTES_MAX_DEFAULT);
  }

  get frameBytesMax(): number {
    return this.#frameBytesMax;
  }

  /** Applies from the next frame header on (a handshake reads small frames, then raises it). */
  set frameBytesMax(value: number) {
    this.#frameBytesMax = checkFrameBytesMax(value);
  }

  /** Bytes held for the frame in progress: at most `FRAME_HEADER_BYTES + frameBytesMax`. */
  get bufferedBytes(): number {
    return this.#headerFill + (this.#payload?.length ?? 0);
  }

  /** The first error met; the decoder reads nothing more after it. */
  get error(): MetaraftError | undefined {
    return this.#error;
  }

  /** Stops delivering: frames after the current one are ignored (the connection is going away). */
  halt(): void {
    this.#halted = true;
    this.#payload = undefined;
  }

  /**
   * Takes the next bytes of the stream and delivers every frame they complete. Returns the
   * error that stopped decoding, if any (and the same error on every later call).
   */
  push(chunk: Uint8Array): MetaraftError | undefined {
    let p = 0;
    while (p < chunk.length && this.#error === undefined && !this.#halted) {
      if (this.#payload === undefined) {
        const take = Math.min(FRAME_HEADER_BYTES - this.#headerFill, chunk.length - p);
        this.#header.set(chunk.subarray(p, p + take), this.#headerFill);
        this.#headerFill += take;
        p += take;
        if (this.#headerFill < FRAME_HEADER_BYTES) break;
        this.#readHeader();
        continue;
      }
      const take = Math.min(this.#payload.length - this.#payloadFill, chunk.length - p);
      this.#payload.set(chunk.subarray(p, p + take), this.#payloadFill);
      this.#payloadFill += take;
      p += take;
      if (this.#payloadFill === this.#payload.length) this.#finishFrame();
    }
    return this.#error;
  }

  #readHeader(): void {
    const length = this.#headerView.getUint32(0, true);
    const version = this.#header[4]!;
    // Checked before a single payload byte is held: a hostile length costs nothing.
    if (length > this.#frameBytesMax) {
      this.#fail(
        new MetaraftError("MR_ERR_FRAME_TOO_LARGE", `${length} bytes, limit ${this.#frameBytesMax}`, {
          offset: this.#frameStart,
        }),
      );
      return;
    }
    if (version !== FRAME_VERSION) {
      this.#fail(
        new MetaraftError("MR_ERR_FRAME_VERSION", `version ${version}`, { offset: this.#frameStart }),
      );
      return;
    }
    this.#payloadCrc = this.#headerView.getUint32(5, true);
    this.#payload = new Uint8Array(length);
    this.#payloadFill = 0;
    if (length === 0) this.#finishFrame();
  }

  #finishFrame(): void {
    const payload = this.#payload!;
    const crc = this.#core.crc32c(payload) >>> 0;
    if (crc !== this.#payloadCrc) {
      this.#fail(new MetaraftError("MR_ERR_FRAME_CORRUPT", undefined, { offset: this.#frameStart }));
      return;
    }
    this.#frameStart += FRAME_HEADER_BYTES + payload.length;
    this.#payload = undefined;
    this.#headerFill = 0;
    this.#onFrame(payload);
  }

  #fail(error: MetaraftError): void {
    this.#error = error;
    this.#payload = undefined;
    this.#headerFill = 0;
  }
}

/** Frames one payload: `u32 length | u8 version | u32 crc32c | payload`. */
export function encodeFrame(
  payload: Uint8Array,
  frameBytesMax: number = FRAME_BYTES_MAX_DEFAULT,
  core: FrameCore = tsCore,
): Uint8Array {
  return core.encodeFrames([payload], frameBytesMax);
}

/** Frames several payloads back to back in one buffer, so that one socket write carries them all. */
export function encodeFrameBatch(
  payloads: readonly Uint8Array[],
  frameBytesMax: number = FRAME_BYTES_MAX_DEFAULT,
  core: FrameCore = tsCore,
): Uint8Array {
  return core.encodeFrames(payloads, frameBytesMax);
}

function checkFrameBytesMax(value: number): number {
  if (!(Number.isInteger(value) && value >= 0 && value <= 0xffffffff)) {
    throw new MetaraftError(
      "MR_ERR_INVALID_ARGUMENT",
      `frameBytesMax must be an integer in [0, 2^32): ${value}`,
    );
  }
  return value;
}
