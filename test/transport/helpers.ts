import { connect, type Socket } from "node:net";
import {
  type PeerAddress,
  PeerTransport,
  type PeerTransportOptions,
  type TransportLogger,
} from "../../src/transport/index.js";

export const SECRET = "metaraft-test-secret-0123456789";
export const CLUSTER = "test-cluster";

export interface LogEntry {
  readonly level: "info" | "warn" | "error";
  readonly obj: Record<string, unknown>;
  readonly msg: string;
}

export interface CapturedLogger extends TransportLogger {
  readonly entries: LogEntry[];
  /** Entries at warn or error whose `reason` (or error code) matches. */
  warnings(match?: (entry: LogEntry) => boolean): LogEntry[];
}

export function captureLogger(): CapturedLogger {
  const entries: LogEntry[] = [];
  const at = (level: LogEntry["level"]) => (obj: object, msg: string) => {
    entries.push({ level, obj: obj as Record<string, unknown>, msg });
  };
  return {
    entries,
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    warnings: (match = () => true) => entries.filter((e) => e.level !== "info" && match(e)),
  };
}

/** Polls until `condition` holds; fails with `what` after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export type TestOptions = Omit<PeerTransportOptions, "nodeId" | "clusterId" | "secret" | "listen"> &
  Partial<Pick<PeerTransportOptions, "clusterId" | "secret" | "listen">>;

/** A started transport on an ephemeral port of 127.0.0.1, with its own captured logger. */
export async function startNode(
  nodeId: number,
  options: TestOptions = {},
): Promise<{ transport: PeerTransport; logger: CapturedLogger; address: PeerAddress }> {
  const logger = captureLogger();
  const transport = new PeerTransport({
    nodeId,
    clusterId: CLUSTER,
    secret: SECRET,
    listen: { host: "127.0.0.1", port: 0 },
    logger,
    ...options,
  });
  await transport.start();
  return { transport, logger, address: transport.address! };
}

/** Makes every transport a peer of every other. */
export function wireAll(nodes: readonly { transport: PeerTransport; address: PeerAddress }[]): void {
  for (const a of nodes) {
    for (const b of nodes) if (a !== b) a.transport.addPeer(b.transport.nodeId, b.address);
  }
}

/** A port that nothing listens on (bound, then released), never handed out twice. */
export { freePort } from "../helpers/cluster.js";

export interface RawClient {
  readonly socket: Socket;
  /** Every byte the transport sent back. */
  readonly received: () => Uint8Array;
  /** Resolves with the time it took the transport to close the connection. */
  readonly closed: Promise<number>;
}

/** A plain TCP client, for speaking garbage (or a hand-made handshake) to a transport. */
export async function rawConnect(port: number): Promise<RawClient> {
  const socket = connect({ host: "127.0.0.1", port });
  const chunks: Buffer[] = [];
  const opened = Date.now();
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.on("error", () => undefined);
  const closed = new Promise<number>((resolve) => socket.on("close", () => resolve(Date.now() - opened)));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return { socket, received: () => new Uint8Array(Buffer.concat(chunks)), closed };
}

/** A payload that says who sent it and its sequence number. */
export function message(from: number, seq: number, size = 8): Uint8Array {
  const payload = new Uint8Array(Math.max(size, 8));
  const view = new DataView(payload.buffer);
  view.setUint32(0, from, true);
  view.setUint32(4, seq, true);
  for (let i = 8; i < payload.length; i++) payload[i] = (seq + i) & 0xff;
  return payload;
}

export function readMessage(payload: Uint8Array): { from: number; seq: number } {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return { from: view.getUint32(0, true), seq: view.getUint32(4, true) };
}
