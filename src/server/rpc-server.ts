import { createServer, type Server, type Socket } from "node:net";
import { pack, unpack } from "msgpackr";
import { MetaraftError } from "../errors.js";
import { PROTOCOL_VERSION, type PushFrame } from "../protocol/index.js";
import { type Runtime, systemRuntime } from "../runtime.js";
import { SETTINGS } from "../settings.js";
import { FrameDecoder } from "../transport/index.js";
import { WriteBatcher } from "../transport/write-batcher.js";

/** One request on a client connection; `id` pairs it with its response (requests pipeline). */
export interface RpcRequest {
  readonly id: number;
  readonly op: string;
  readonly [field: string]: unknown;
}

export type RpcResponse =
  | { readonly id: number; readonly ok: true; readonly [field: string]: unknown }
  | { readonly id: number; readonly ok: false; readonly error: ReturnType<MetaraftError["toJSON"]> };

/**
 * The connection a request came on, for the ops that stream (watches): they push frames on it,
 * watch how much of it the kernel has not taken yet, and end when it closes.
 */
export interface RpcConnection {
  /** Unique within this server: per-connection limits are kept by it. */
  readonly id: number;
  readonly closed: boolean;
  /** Bytes queued on this connection that the kernel has not taken yet (see WriteBatcher). */
  readonly bufferedBytes: number;
  /** Queues a server-pushed frame; frames and responses leave in the order they were queued. */
  push(frame: PushFrame): void;
  /** Runs `fn` once everything queued so far has reached the kernel; never after the close. */
  onDrain(fn: () => void): void;
  /** Runs `fn` once, when the connection closes (in a later turn if it is closed already). */
  onClose(fn: () => void): void;
}

export type RpcHandler = (
  request: RpcRequest,
  connection: RpcConnection,
) => Promise<Record<string, unknown>> | Record<string, unknown>;

export interface RpcServerOptions {
  readonly host?: string;
  readonly port: number;
  readonly clusterId: string;
  readonly handler: RpcHandler;
  /**
   * Sent back with a successful hello (the node id, so clients can map leaders to endpoints).
   * A function is evaluated per hello, so the reply reflects the current leader and members.
   */
  readonly hello?: Record<string, unknown> | (() => Record<string, unknown>);
  /** The largest request frame; a larger one closes the connection with FRAME_TOO_LARGE. */
  readonly frameBytesMax?: number;
  /** Requests in progress per connection; more wait in the socket (TCP backpressure). */
  readonly inflightPerConnectionMax?: number;
  readonly connectionsMax?: number;
  /** Schedules what a closed connection's late subscribers are told; the system's by default. */
  readonly runtime?: Runtime;
}

export const RPC_PROTOCOL_VERSION = PROTOCOL_VERSION;
/** Responses may carry more than requests (a listing); each is still bounded. */
export const RPC_RESPONSE_BYTES_MAX = 64 * 1024 * 1024;
export const RPC_DEFAULTS = {
  /** The node's requestBytesMax. */
  frameBytesMax: SETTINGS.requestBytesMax.default,
  inflightPerConnectionMax: 1024,
  connectionsMax: 1024,
} as const;

/**
 * Framed TCP with MessagePack bodies. The first frame is a hello `{ protocol, clusterId }`,
 * answered with `{ ok, nodeId? }`; then every frame is a request, answered by a response with
 * the same id, possibly out of order. Bad input gets an error response with a registry code,
 * or, when the framing itself is broken, the connection is closed; the server keeps serving.
 */
export class RpcServer {
  readonly #options: RpcServerOptions;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #connections = 0;

  constructor(options: RpcServerOptions) {
    this.#options = options;
    this.#server = createServer((socket) => this.#accept(socket));
    this.#server.maxConnections = options.connectionsMax ?? RPC_DEFAULTS.connectionsMax;
  }

  async listen(): Promise<{ host: string; port: number }> {
    const host = this.#options.host ?? "127.0.0.1";
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", (cause: NodeJS.ErrnoException) =>
        reject(
          new MetaraftError(
            "MR_ERR_LISTEN_FAILED",
            cause.code === "EADDRINUSE"
              ? `${host}:${this.#options.port} is in use`
              : `${host}:${this.#options.port}: ${cause.message}`,
            { cause },
          ),
        ),
      );
      this.#server.listen(this.#options.port, host, () => resolve());
    });
    const address = this.#server.address();
    if (typeof address !== "object" || address === null)
      throw new MetaraftError("MR_ERR_INTERNAL", "no address");
    return { host: address.address, port: address.port };
  }

  #accept(socket: Socket): void {
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    const frameBytesMax = this.#options.frameBytesMax ?? RPC_DEFAULTS.frameBytesMax;
    const inflightMax = this.#options.inflightPerConnectionMax ?? RPC_DEFAULTS.inflightPerConnectionMax;
    let greeted = false;
    let inflight = 0;
    const out = new WriteBatcher(socket, RPC_RESPONSE_BYTES_MAX);
    const reply = (message: unknown): void => out.write(pack(message));
    const closeWaiters: (() => void)[] = [];
    let closed = false;
    const connection: RpcConnection = {
      id: ++this.#connections,
      get closed() {
        return closed;
      },
      get bufferedBytes() {
        return out.bufferedBytes;
      },
      push: (frame) => {
        if (!closed) reply(frame);
      },
      onDrain: (fn) =>
        out.whenWritten(() => {
          if (!closed) fn();
        }),
      onClose: (fn) => {
        if (closed) (this.#options.runtime ?? systemRuntime).defer(fn);
        else closeWaiters.push(fn);
      },
    };
    const decoder = new FrameDecoder({
      frameBytesMax,
      onFrame: (payload) => {
        let body: unknown;
        try {
          body = unpack(payload);
        } catch {
          reply({
            id: 0,
            ok: false,
            error: new MetaraftError("MR_ERR_INVALID_ARGUMENT", "body is not MessagePack").toJSON(),
          });
          return;
        }
        if (!greeted) {
          const hello = body as { protocol?: unknown; clusterId?: unknown };
          if (hello?.protocol !== RPC_PROTOCOL_VERSION || hello.clusterId !== this.#options.clusterId) {
            reply({
              ok: false,
              error: new MetaraftError("MR_ERR_HANDSHAKE_REJECTED", "protocol or cluster id").toJSON(),
            });
            // The refusal must reach the client before the connection closes.
            out.flush();
            socket.end();
            return;
          }
          greeted = true;
          const helloReply = this.#options.hello;
          reply({ ok: true, ...(typeof helloReply === "function" ? helloReply() : helloReply) });
          return;
        }
        const request = body as RpcRequest;
        if (
          typeof request !== "object" ||
          request === null ||
          typeof request.id !== "number" ||
          typeof request.op !== "string"
        ) {
          reply({
            id: 0,
            ok: false,
            error: new MetaraftError("MR_ERR_INVALID_ARGUMENT", "a request needs id and op").toJSON(),
          });
          return;
        }
        // Answered here, before the handler, so a client can tell a live but busy node from a
        // connection that stays open and never answers (a frozen process).
        if (request.op === "ping") {
          reply({ id: request.id, ok: true, pong: true });
          return;
        }
        if (++inflight >= inflightMax) socket.pause();
        Promise.resolve()
          .then(() => this.#options.handler(request, connection))
          .then(
            (result) => reply({ ...result, id: request.id, ok: true }),
            (error: unknown) => {
              const coded =
                error instanceof MetaraftError
                  ? error
                  : new MetaraftError("MR_ERR_INTERNAL", String(error), { cause: error });
              reply({ id: request.id, ok: false, error: coded.toJSON() });
            },
          )
          .finally(() => {
            if (--inflight < inflightMax) socket.resume();
          });
      },
    });
    socket.on("data", (chunk: Buffer) => {
      const error = decoder.push(chunk);
      if (error) {
        // The stream cannot be re-synchronised after a broken frame: say why, then hang up.
        reply({ id: 0, ok: false, error: error.toJSON() });
        out.flush();
        socket.end();
      }
    });
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      this.#sockets.delete(socket);
      closed = true;
      for (const fn of closeWaiters.splice(0)) fn();
    });
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
