import { createServer, connect as dialTcp, type Server, type Socket } from "node:net";
import { FRAME_BYTES_MAX_DEFAULT, tsCore } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import { type Runtime, systemRuntime, type Timer } from "../runtime.js";
import { transportError } from "./errors.js";
import { encodeFrame, encodeFrameBatch, type FrameCore, FrameDecoder } from "./framing.js";
import {
  type Challenge,
  CLIENT_ADDRESS_BYTES_MAX,
  decodeHandshake,
  encodeHandshake,
  HANDSHAKE_FRAME_BYTES_MAX,
  type HandshakeMessage,
  type Hello,
  handshakeProof,
  isClusterId,
  isNodeId,
  newNonce,
  PEER_PROTOCOL_VERSION,
  proofMatches,
  REFUSAL_DETAIL_BYTES_MAX,
  type RefusalReason,
  SECRET_BYTES_MIN,
  type Transcript,
} from "./handshake.js";
import { SendQueue } from "./send-queue.js";

/**
 * Raft's peer-to-peer links: opaque messages between the nodes of one cluster, over TCP.
 *
 * Connection model: one connection per ORDERED pair. Node A dials B and uses that connection
 * only to send A → B; B's messages to A travel on the connection B dials to A. Each direction
 * then has exactly one owner (the sender), which holds the queue, does the reconnecting and
 * backs off, and FIFO per pair is simply TCP's order on one socket. A single bidirectional
 * connection would halve the sockets, but both nodes dial at once after every restart and a
 * tie-break must pick the survivor and move queued messages between connections; for clusters
 * of three or five nodes the extra sockets cost less than that logic.
 *
 * Delivery is at most once, in order per pair: a message handed to a socket that then fails is
 * lost (Raft retransmits), a message still queued survives reconnects. `send` never blocks and
 * never waits; a full queue refuses the message and counts it.
 */

export interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

/** A subset of pino's interface: `(fields, message)` at three levels. */
export interface TransportLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export type MessageHandler = (from: number, payload: Uint8Array) => void;

export interface PeerTransportOptions {
  readonly nodeId: number;
  readonly clusterId: string;
  /** The shared cluster secret (at least 16 bytes); it never goes on the wire. */
  readonly secret: string | Uint8Array;
  /** Where this node accepts its peers' connections; port 0 picks a free port (see `address`). */
  readonly listen: { readonly host?: string; readonly port: number };
  /** Every other member of the cluster (not this node). */
  readonly peers?: ReadonlyMap<number, PeerAddress>;
  /** Per peer, frame bytes (payload + 9) waiting to be written. Default 64 MiB. */
  readonly sendQueueBytesMax?: number;
  /** Per peer, messages waiting to be written. Default 4096. */
  readonly sendQueueMessagesMax?: number;
  /** Bytes framed into one socket write. Default 1 MiB. */
  readonly writeBatchBytesMax?: number;
  /** Messages framed into one socket write. Default 1024. */
  readonly writeBatchMessagesMax?: number;
  /** Backoff between dial attempts: doubles from `initialMs` up to `maxMs`, with jitter. */
  readonly reconnect?: { readonly initialMs?: number; readonly maxMs?: number };
  /** From dialing (or accepting) to an authenticated connection. Default 2000 ms. */
  readonly handshakeTimeoutMs?: number;
  /** The largest message. Default `FRAME_BYTES_MAX_DEFAULT` (16 MiB). */
  readonly frameBytesMax?: number;
  /** Accepted connections not yet authenticated; more are closed at once. Default 64. */
  readonly inboundPendingMax?: number;
  readonly logger?: TransportLogger;
  /**
   * This node's client address (host:port), told to whoever sends the peer port something that
   * is not a peer's hello: a client given the wrong port can then say which port is right.
   */
  readonly clientAddress?: string;
  /** `bootstrapFingerprint` of the voters this node's data began with; absent on a node that joined. */
  readonly bootstrap?: string;
  /** Timers for handshakes, redials and deferred flushes. */
  readonly runtime?: Runtime;
  /** In [0, 1); jitters the backoff. Default the runtime's. Handshake nonces never use it. */
  readonly random?: () => number;
  /** CRC32C and framing; default the TypeScript twin (pass `createCore().sync` to use WASM). */
  readonly core?: FrameCore;
}

export const PEER_TRANSPORT_DEFAULTS = {
  host: "127.0.0.1",
  sendQueueBytesMax: 64 * 1024 * 1024,
  sendQueueMessagesMax: 4096,
  writeBatchBytesMax: 1024 * 1024,
  writeBatchMessagesMax: 1024,
  reconnectInitialMs: 50,
  reconnectMaxMs: 2000,
  handshakeTimeoutMs: 2000,
  frameBytesMax: FRAME_BYTES_MAX_DEFAULT,
  inboundPendingMax: 64,
  /** Idle time before TCP keepalive probes start on an idle connection. */
  keepAliveInitialDelayMs: 10_000,
} as const;

export interface PeerStats {
  readonly nodeId: number;
  readonly host: string;
  readonly port: number;
  /** The outbound connection (this node → peer) is authenticated and writable. */
  readonly connected: boolean;
  /** The peer's connection to this node is authenticated. */
  readonly inboundConnected: boolean;
  readonly queuedMessages: number;
  readonly queuedBytes: number;
  /** Messages handed to the socket (they may still be lost if it then fails). */
  readonly sent: number;
  readonly sentBytes: number;
  /** Socket writes that carried them (each a batch of frames). */
  readonly writes: number;
  /** Messages refused by `send` because the queue was full, or discarded with the peer. */
  readonly dropped: number;
  readonly received: number;
  /** Dial attempts after the first. */
  readonly reconnects: number;
}

export interface TransportStats {
  readonly nodeId: number;
  readonly listening: PeerAddress | undefined;
  readonly peers: readonly PeerStats[];
  /** `send` calls to a node that is not a peer (or after `close`). */
  readonly droppedNoPeer: number;
  /** Handshakes this node refused (as listener or as dialer). */
  readonly handshakesRefused: number;
  readonly inboundPending: number;
}

type LinkState =
  | "connecting" // dialer: TCP connect in progress
  | "await-challenge" // dialer: hello sent
  | "await-welcome" // dialer: proof sent
  | "await-hello" // listener: accepted
  | "await-proof" // listener: challenge sent
  | "open" // authenticated
  | "closing" // refused: the refusal is being flushed; the handshake timer still bounds it
  | "closed";

/** One TCP connection, from its first byte to its close. */
interface Link {
  readonly role: "dialer" | "listener";
  readonly socket: Socket;
  readonly decoder: FrameDecoder;
  readonly remote: string;
  readonly nonce: Uint8Array;
  state: LinkState;
  /** Dialer: the peer dialed. Listener: the node that said hello (trusted only once open). */
  peerId: number | undefined;
  peerNonce: Uint8Array | undefined;
  timer: Timer | undefined;
  waitingDrain: boolean;
  opened: boolean;
  /** The end was already logged (refused, aborted); the close handler stays quiet. */
  reported: boolean;
  error: Error | undefined;
}

interface PeerState {
  readonly nodeId: number;
  address: PeerAddress;
  readonly queue: SendQueue;
  outbound: Link | undefined;
  inbound: Link | undefined;
  retryTimer: Timer | undefined;
  /** A flush is deferred to the end of this turn (see #scheduleFlush). */
  flushDeferred: boolean;
  /** Consecutive dial attempts that did not reach `open`: the backoff exponent. */
  failures: number;
  /** The dial failure logged last in the current streak: a peer that is down logs once, not every retry. */
  lastLogged: string | undefined;
  sent: number;
  sentBytes: number;
  writes: number;
  dropped: number;
  received: number;
  reconnects: number;
}

interface Resolved {
  readonly secret: Uint8Array;
  readonly host: string;
  readonly port: number;
  readonly sendQueueBytesMax: number;
  readonly sendQueueMessagesMax: number;
  readonly writeBatchBytesMax: number;
  readonly writeBatchMessagesMax: number;
  readonly reconnectInitialMs: number;
  readonly reconnectMaxMs: number;
  readonly handshakeTimeoutMs: number;
  readonly frameBytesMax: number;
  readonly inboundPendingMax: number;
}

export class PeerTransport {
  readonly nodeId: number;
  readonly clusterId: string;
  readonly #o: Resolved;
  readonly #logger: TransportLogger | undefined;
  readonly #random: () => number;
  readonly #runtime: Runtime;
  readonly #core: FrameCore;
  readonly #clientAddress: string | undefined;
  readonly #bootstrap: string | undefined;
  readonly #peers = new Map<number, PeerState>();
  /** Accepted connections not yet authenticated (bounded by `inboundPendingMax`). */
  readonly #pending = new Set<Link>();
  #server: Server | undefined;
  #listening: Promise<void> | undefined;
  #state: "new" | "starting" | "running" | "closed" = "new";
  #closing: Promise<void> | undefined;
  #handler: MessageHandler | undefined;
  #droppedNoPeer = 0;
  #handshakesRefused = 0;

  constructor(options: PeerTransportOptions) {
    const d = PEER_TRANSPORT_DEFAULTS;
    if (!isNodeId(options.nodeId)) invalid(`nodeId must be a non-negative safe integer: ${options.nodeId}`);
    if (!isClusterId(options.clusterId)) invalid("clusterId must be a non-empty string of at most 256 bytes");
    const secret =
      typeof options.secret === "string"
        ? new Uint8Array(Buffer.from(options.secret, "utf8"))
        : options.secret;
    if (!(secret instanceof Uint8Array) || secret.length < SECRET_BYTES_MIN) {
      invalid(`secret must be at least ${SECRET_BYTES_MIN} bytes`);
    }
    this.nodeId = options.nodeId;
    this.clusterId = options.clusterId;
    this.#clientAddress = options.clientAddress?.slice(0, CLIENT_ADDRESS_BYTES_MAX);
    this.#bootstrap = options.bootstrap;
    this.#o = {
      secret: new Uint8Array(secret),
      host: options.listen.host ?? d.host,
      port: checkInt("listen.port", options.listen.port, 0, 65535),
      sendQueueBytesMax: checkInt("sendQueueBytesMax", options.sendQueueBytesMax ?? d.sendQueueBytesMax, 1),
      sendQueueMessagesMax: checkInt(
        "sendQueueMessagesMax",
        options.sendQueueMessagesMax ?? d.sendQueueMessagesMax,
        1,
      ),
      writeBatchBytesMax: checkInt(
        "writeBatchBytesMax",
        options.writeBatchBytesMax ?? d.writeBatchBytesMax,
        1,
      ),
      writeBatchMessagesMax: checkInt(
        "writeBatchMessagesMax",
        options.writeBatchMessagesMax ?? d.writeBatchMessagesMax,
        1,
      ),
      reconnectInitialMs: checkInt(
        "reconnect.initialMs",
        options.reconnect?.initialMs ?? d.reconnectInitialMs,
        1,
        3_600_000,
      ),
      reconnectMaxMs: checkInt("reconnect.maxMs", options.reconnect?.maxMs ?? d.reconnectMaxMs, 1, 3_600_000),
      handshakeTimeoutMs: checkInt(
        "handshakeTimeoutMs",
        options.handshakeTimeoutMs ?? d.handshakeTimeoutMs,
        1,
        3_600_000,
      ),
      frameBytesMax: checkInt("frameBytesMax", options.frameBytesMax ?? d.frameBytesMax, 1, 0xffffffff),
      inboundPendingMax: checkInt("inboundPendingMax", options.inboundPendingMax ?? d.inboundPendingMax, 1),
    };
    if (this.#o.reconnectMaxMs < this.#o.reconnectInitialMs) invalid("reconnect.maxMs must be >= initialMs");
    this.#logger = options.logger;
    this.#runtime = options.runtime ?? systemRuntime;
    this.#random = options.random ?? (() => this.#runtime.random());
    this.#core = options.core ?? tsCore;
    for (const [nodeId, address] of options.peers ?? []) this.#addPeerState(nodeId, address);
  }

  /** The address actually listened on (the real port when `listen.port` was 0); once started. */
  get address(): PeerAddress | undefined {
    const address = this.#server?.address();
    if (address === null || address === undefined || typeof address === "string") return undefined;
    return { host: address.address, port: address.port };
  }

  /** Listens, then dials every peer. Rejects (with `MR_ERR_LISTEN_FAILED`) if the port cannot be bound. */
  async start(): Promise<void> {
    if (this.#state !== "new") invalid(`start() on a transport that is ${this.#state}`);
    this.#state = "starting";
    const server = createServer((socket) => this.#accept(socket));
    this.#server = server;
    this.#listening = new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#o.port, this.#o.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    try {
      await this.#listening;
    } catch (error) {
      this.#state = "closed";
      throw transportError(
        "MR_ERR_LISTEN_FAILED",
        `${this.#o.host}:${this.#o.port}: ${(error as Error).message}`,
        error,
      );
    }
    server.on("error", (error) => this.#logger?.error({ err: error }, "peer transport listener error"));
    if (this.#state !== "starting") return; // closed while binding; close() shuts the server
    this.#state = "running";
    for (const peer of this.#peers.values()) this.#dial(peer);
  }

  /** One handler receives every authenticated message; a later call replaces it. */
  onMessage(handler: MessageHandler): void {
    this.#handler = handler;
  }

  /**
   * Queues `payload` for `to`. Returns false, counting a drop, when `to` is not a peer or its
   * queue is full; never blocks. The transport keeps `payload` until it is written: do not
   * change it after the call. A payload above `frameBytesMax` can never be sent and throws
   * `MR_ERR_FRAME_TOO_LARGE` (it is a bug in the caller, not a condition to retry).
   */
  send(to: number, payload: Uint8Array): boolean {
    if (!(payload instanceof Uint8Array)) invalid("payload must be a Uint8Array");
    if (payload.length > this.#o.frameBytesMax) {
      throw new MetaraftError(
        "MR_ERR_FRAME_TOO_LARGE",
        `message of ${payload.length} bytes to node ${to}, limit ${this.#o.frameBytesMax}`,
      );
    }
    const peer = this.#peers.get(to);
    if (peer === undefined || this.#state === "closed") {
      this.#droppedNoPeer++;
      return false;
    }
    if (!peer.queue.push(payload)) {
      peer.dropped++;
      return false;
    }
    // A full batch goes out now, so that a burst drains into the socket instead of the queue.
    if (
      peer.queue.messages >= this.#o.writeBatchMessagesMax ||
      peer.queue.bytes >= this.#o.writeBatchBytesMax
    ) {
      this.#flush(peer);
    } else {
      this.#scheduleFlush(peer);
    }
    return true;
  }

  /** Adds a member, or moves one to a new address (its queue is kept, its connection redialed). */
  addPeer(nodeId: number, address: PeerAddress): void {
    if (this.#state === "closed") invalid("addPeer() after close()");
    const existing = this.#peers.get(nodeId);
    if (existing === undefined) {
      const peer = this.#addPeerState(nodeId, address);
      if (this.#state === "running") this.#dial(peer);
      return;
    }
    checkAddress(address);
    if (existing.address.host === address.host && existing.address.port === address.port) return;
    existing.address = { host: address.host, port: address.port };
    existing.failures = 0;
    if (existing.outbound !== undefined) {
      // Its close handler dials the new address after the shortest backoff.
      existing.outbound.reported = true;
      existing.outbound.socket.destroy();
    } else if (existing.retryTimer !== undefined) {
      existing.retryTimer.cancel();
      existing.retryTimer = undefined;
      this.#dial(existing);
    }
  }

  /** Removes a member: its connections close and its queued messages are discarded (counted as dropped). */
  removePeer(nodeId: number): boolean {
    const peer = this.#peers.get(nodeId);
    if (peer === undefined) return false;
    this.#peers.delete(nodeId);
    this.#shutPeer(peer);
    return true;
  }

  /** Bytes queued for `to` and not yet handed to its socket (0 for an unknown peer). */
  queuedBytes(to: number): number {
    return this.#peers.get(to)?.queue.bytes ?? 0;
  }

  stats(): TransportStats {
    const peers: PeerStats[] = [];
    for (const peer of [...this.#peers.values()].sort((a, b) => a.nodeId - b.nodeId)) {
      peers.push({
        nodeId: peer.nodeId,
        host: peer.address.host,
        port: peer.address.port,
        connected: peer.outbound?.state === "open",
        inboundConnected: peer.inbound?.state === "open",
        queuedMessages: peer.queue.messages,
        queuedBytes: peer.queue.bytes,
        sent: peer.sent,
        sentBytes: peer.sentBytes,
        writes: peer.writes,
        dropped: peer.dropped,
        received: peer.received,
        reconnects: peer.reconnects,
      });
    }
    return {
      nodeId: this.nodeId,
      listening: this.address,
      peers,
      droppedNoPeer: this.#droppedNoPeer,
      handshakesRefused: this.#handshakesRefused,
      inboundPending: this.#pending.size,
    };
  }

  /** Closes every connection and the listener; queued messages are discarded. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = "closed";
    for (const peer of this.#peers.values()) this.#shutPeer(peer);
    for (const link of this.#pending) this.#destroy(link);
    this.#pending.clear();
    // A close() during start() waits for the bind to settle, so the port is released either way.
    await this.#listening?.catch(() => undefined);
    const server = this.#server;
    if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #addPeerState(nodeId: number, address: PeerAddress): PeerState {
    if (!isNodeId(nodeId)) invalid(`peer nodeId must be a non-negative safe integer: ${nodeId}`);
    if (nodeId === this.nodeId) invalid(`node ${nodeId} cannot be its own peer`);
    checkAddress(address);
    const peer: PeerState = {
      nodeId,
      address: { host: address.host, port: address.port },
      queue: new SendQueue(this.#o.sendQueueBytesMax, this.#o.sendQueueMessagesMax),
      outbound: undefined,
      inbound: undefined,
      retryTimer: undefined,
      flushDeferred: false,
      failures: 0,
      lastLogged: undefined,
      sent: 0,
      sentBytes: 0,
      writes: 0,
      dropped: 0,
      received: 0,
      reconnects: 0,
    };
    this.#peers.set(nodeId, peer);
    return peer;
  }

  #shutPeer(peer: PeerState): void {
    peer.retryTimer?.cancel();
    peer.retryTimer = undefined;
    // A deferred flush still runs, and finds no open link to write to.
    if (peer.outbound !== undefined) this.#destroy(peer.outbound);
    if (peer.inbound !== undefined) this.#destroy(peer.inbound);
    peer.dropped += peer.queue.clear();
  }

  // ---- links ---------------------------------------------------------------------------------

  #newLink(role: Link["role"], socket: Socket, peerId: number | undefined, remote: string): Link {
    const link: Link = {
      role,
      socket,
      decoder: new FrameDecoder({
        // Strangers get small frames only; raised to frameBytesMax once the peer is authenticated.
        frameBytesMax: HANDSHAKE_FRAME_BYTES_MAX,
        onFrame: (payload) => this.#onFrame(link, payload),
        core: this.#core,
      }),
      remote,
      nonce: newNonce(),
      state: role === "dialer" ? "connecting" : "await-hello",
      peerId,
      peerNonce: undefined,
      timer: undefined,
      waitingDrain: false,
      opened: false,
      reported: false,
      error: undefined,
    };
    socket.setNoDelay(true);
    socket.setKeepAlive(true, PEER_TRANSPORT_DEFAULTS.keepAliveInitialDelayMs);
    socket.on("error", (error) => {
      link.error ??= error;
    });
    socket.on("data", (chunk: Buffer) => {
      if (link.state === "closing" || link.state === "closed") return;
      // A frame may have ended the link already (refused, aborted); the error is then moot.
      const error = link.decoder.push(chunk);
      if (error !== undefined && !link.reported) this.#abort(link, error, "bad frame from peer");
    });
    link.timer = this.#runtime.after(this.#o.handshakeTimeoutMs, () => this.#onHandshakeTimeout(link));
    return link;
  }

  #dial(peer: PeerState): void {
    if (this.#state !== "running" || this.#peers.get(peer.nodeId) !== peer) return;
    const { host, port } = peer.address;
    const socket = dialTcp({ host, port });
    const link = this.#newLink("dialer", socket, peer.nodeId, `${host}:${port}`);
    peer.outbound = link;
    socket.once("connect", () => {
      if (link.state !== "connecting") return;
      link.state = "await-challenge";
      this.#writeHandshake(link, {
        kind: "hello",
        protocol: PEER_PROTOCOL_VERSION,
        clusterId: this.clusterId,
        nodeId: this.nodeId,
        nonce: link.nonce,
        ...(this.#bootstrap === undefined ? {} : { bootstrap: this.#bootstrap }),
      });
    });
    socket.on("close", () => this.#onOutboundClosed(peer, link));
  }

  #accept(socket: Socket): void {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    if (this.#state !== "running") {
      socket.destroy();
      return;
    }
    if (this.#pending.size >= this.#o.inboundPendingMax) {
      this.#logger?.warn(
        { remote, inboundPendingMax: this.#o.inboundPendingMax },
        "peer connection refused: too many unauthenticated connections",
      );
      socket.destroy();
      return;
    }
    const link = this.#newLink("listener", socket, undefined, remote);
    this.#pending.add(link);
    socket.on("close", () => this.#onInboundClosed(link));
  }

  #onFrame(link: Link, payload: Uint8Array): void {
    if (link.state === "open") {
      if (link.role === "listener") {
        this.#deliver(link, payload);
      } else {
        // The listener side of a connection never sends after its welcome.
        this.#abort(
          link,
          transportError("MR_ERR_PEER_PROTOCOL", "data from the listener on a send-only connection"),
          "peer broke the protocol",
        );
      }
      return;
    }
    const decoded = decodeHandshake(payload);
    if (!decoded.ok) {
      this.#refuse(link, decoded.reason, decoded.detail);
      return;
    }
    const message = decoded.message;
    if (message.kind === "refused") {
      this.#abort(
        link,
        transportError(
          "MR_ERR_HANDSHAKE_REJECTED",
          `refused by the peer: ${message.reason}${message.detail ? ` (${message.detail})` : ""}`,
        ),
        "peer refused the handshake",
        { reason: message.reason },
      );
      return;
    }
    if (link.state === "await-hello" && message.kind === "hello") this.#onHello(link, message);
    else if (link.state === "await-proof" && message.kind === "proof") this.#onProof(link, message.proof);
    else if (link.state === "await-challenge" && message.kind === "challenge")
      this.#onChallenge(link, message);
    else if (link.state === "await-welcome" && message.kind === "welcome") this.#openOutbound(link);
    else this.#refuse(link, "unexpected-message", `${message.kind} while ${link.state}`);
  }

  /** Listener, step 1: is this a member of our cluster? Then prove we are too. */
  #onHello(link: Link, hello: Hello): void {
    link.peerId = hello.nodeId;
    if (hello.clusterId !== this.clusterId) {
      this.#refuse(
        link,
        "cluster-mismatch",
        `cluster ${JSON.stringify(hello.clusterId)}, but this is cluster ${JSON.stringify(this.clusterId)}`,
      );
      return;
    }
    if (!this.#peers.has(hello.nodeId)) {
      this.#refuse(link, "unknown-node", `node ${hello.nodeId} is not a peer`);
      return;
    }
    if (this.#refusedForBootstrap(link, hello.nodeId, hello.bootstrap)) return;
    link.peerNonce = hello.nonce;
    link.state = "await-proof";
    this.#writeHandshake(link, {
      kind: "challenge",
      protocol: PEER_PROTOCOL_VERSION,
      nodeId: this.nodeId,
      nonce: link.nonce,
      proof: handshakeProof(this.#o.secret, "listener", this.#transcript(link)),
      ...(this.#bootstrap === undefined ? {} : { bootstrap: this.#bootstrap }),
    });
  }

  /** Refuses a peer when both ends were bootstrapped (neither joined), from different voter lists. */
  #refusedForBootstrap(link: Link, peer: number, theirs: string | undefined): boolean {
    if (theirs === undefined || this.#bootstrap === undefined || theirs === this.#bootstrap) return false;
    this.#refuse(
      link,
      "cluster-mismatch",
      `node ${peer}'s data was bootstrapped with voters ${theirs}, this node's with voters ${this.#bootstrap}: ` +
        "every node's first --cluster must name the same members",
    );
    return true;
  }

  /** Listener, step 2: the dialer's proof; then the connection carries its messages to us. */
  #onProof(link: Link, proof: Uint8Array): void {
    const expected = handshakeProof(this.#o.secret, "dialer", this.#transcript(link));
    if (!proofMatches(expected, proof)) {
      this.#refuse(link, "bad-proof", "the dialer's proof does not match the cluster secret");
      return;
    }
    const peer = this.#peers.get(link.peerId!);
    if (peer === undefined) {
      this.#refuse(link, "unknown-node", `node ${link.peerId} was removed during the handshake`);
      return;
    }
    this.#writeHandshake(link, { kind: "welcome" });
    this.#markOpen(link);
    link.decoder.frameBytesMax = this.#o.frameBytesMax;
    this.#pending.delete(link);
    // The peer dials one connection at a time, so an older one is a leftover of a restart.
    if (peer.inbound !== undefined) this.#destroy(peer.inbound);
    peer.inbound = link;
    this.#logger?.info({ peer: peer.nodeId, remote: link.remote }, "peer connected (inbound)");
  }

  /** Dialer: check that the node we reached is the one we meant, and that it knows the secret. */
  #onChallenge(link: Link, challenge: Challenge): void {
    if (challenge.nodeId !== link.peerId) {
      this.#refuse(link, "wrong-node", `expected node ${link.peerId}, reached node ${challenge.nodeId}`);
      return;
    }
    if (this.#refusedForBootstrap(link, challenge.nodeId, challenge.bootstrap)) return;
    link.peerNonce = challenge.nonce;
    const transcript = this.#transcript(link);
    if (!proofMatches(handshakeProof(this.#o.secret, "listener", transcript), challenge.proof)) {
      this.#refuse(link, "bad-proof", "the listener's proof does not match the cluster secret");
      return;
    }
    link.state = "await-welcome";
    this.#writeHandshake(link, {
      kind: "proof",
      proof: handshakeProof(this.#o.secret, "dialer", transcript),
    });
  }

  #openOutbound(link: Link): void {
    const peer = this.#peers.get(link.peerId!);
    if (peer === undefined || peer.outbound !== link) {
      this.#destroy(link);
      return;
    }
    this.#markOpen(link);
    peer.failures = 0;
    peer.lastLogged = undefined;
    this.#logger?.info({ peer: peer.nodeId, remote: link.remote }, "peer connected (outbound)");
    this.#flush(peer);
  }

  #markOpen(link: Link): void {
    link.timer?.cancel();
    link.timer = undefined;
    link.state = "open";
    link.opened = true;
  }

  #transcript(link: Link): Transcript {
    const dialer = link.role === "dialer";
    return {
      clusterId: this.clusterId,
      dialerId: dialer ? this.nodeId : link.peerId!,
      listenerId: dialer ? link.peerId! : this.nodeId,
      dialerNonce: dialer ? link.nonce : link.peerNonce!,
      listenerNonce: dialer ? link.peerNonce! : link.nonce,
    };
  }

  #writeHandshake(link: Link, message: HandshakeMessage): void {
    link.socket.write(encodeFrame(encodeHandshake(message), HANDSHAKE_FRAME_BYTES_MAX, this.#core));
  }

  /**
   * Ends a handshake we will not complete: tells the other side why (so both ends log it), and
   * lets the socket close. The handshake timer, still running, destroys it if the peer lingers.
   */
  #refuse(link: Link, reason: RefusalReason, detail: string): void {
    this.#handshakesRefused++;
    const code = reason === "unknown-node" ? "MR_ERR_PEER_UNKNOWN" : "MR_ERR_HANDSHAKE_REJECTED";
    const err = transportError(code, `${reason}: ${detail}`);
    this.#report(link, { reason, err }, "peer handshake refused");
    link.state = "closing";
    link.decoder.halt();
    link.socket.end(
      encodeFrame(
        encodeHandshake({
          kind: "refused",
          reason,
          detail: detail.slice(0, REFUSAL_DETAIL_BYTES_MAX),
          ...(reason === "malformed" && this.#clientAddress
            ? { nodeId: this.nodeId, client: this.#clientAddress }
            : {}),
        }),
        HANDSHAKE_FRAME_BYTES_MAX,
        this.#core,
      ),
    );
  }

  #abort(link: Link, err: MetaraftError, msg: string, fields: object = {}): void {
    this.#report(link, { ...fields, err }, msg);
    this.#destroy(link);
  }

  #onHandshakeTimeout(link: Link): void {
    link.timer = undefined;
    if (link.state === "closing") {
      this.#destroy(link);
      return;
    }
    this.#abort(
      link,
      transportError(
        "MR_ERR_HANDSHAKE_TIMEOUT",
        `no authenticated connection after ${this.#o.handshakeTimeoutMs} ms (state ${link.state})`,
        link.error,
      ),
      "peer handshake timed out",
    );
  }

  #destroy(link: Link): void {
    link.reported = true;
    link.state = "closed";
    link.decoder.halt();
    link.timer?.cancel();
    link.timer = undefined;
    link.socket.destroy();
  }

  /**
   * Logs the end of a link once. A listener logs every event (each is someone else's attempt);
   * a dialer logs the first failure of a streak and each change of reason, so that a peer that
   * stays down costs one line, not one per retry.
   */
  #report(link: Link, fields: { err: MetaraftError; reason?: string }, msg: string): void {
    if (link.reported) return;
    link.reported = true;
    const base = { ...fields, remote: link.remote, role: link.role, peer: link.peerId };
    if (link.role === "listener" || link.opened) {
      this.#logger?.warn(base, msg);
      return;
    }
    const peer = this.#peers.get(link.peerId!);
    const key = `${msg}|${fields.reason ?? fields.err.code}`;
    if (peer === undefined || peer.lastLogged === key) return;
    peer.lastLogged = key;
    this.#logger?.warn(base, msg);
  }

  #onOutboundClosed(peer: PeerState, link: Link): void {
    const wasOpen = link.opened;
    if (!link.reported) {
      link.reported = true;
      const err = transportError("MR_ERR_CONNECTION_CLOSED", `to node ${peer.nodeId}`, link.error);
      if (wasOpen) {
        this.#logger?.warn({ peer: peer.nodeId, remote: link.remote, err }, "peer connection lost");
      } else {
        const key = `unreachable|${(link.error as NodeJS.ErrnoException | undefined)?.code ?? "closed"}`;
        if (peer.lastLogged !== key) {
          peer.lastLogged = key;
          this.#logger?.warn({ peer: peer.nodeId, remote: link.remote, err }, "peer unreachable");
        }
      }
    }
    link.timer?.cancel();
    link.timer = undefined;
    link.state = "closed";
    link.decoder.halt();
    if (peer.outbound !== link) return;
    peer.outbound = undefined;
    if (wasOpen) peer.lastLogged = undefined;
    if (this.#state !== "running" || this.#peers.get(peer.nodeId) !== peer) return;
    this.#scheduleRedial(peer);
  }

  #onInboundClosed(link: Link): void {
    link.timer?.cancel();
    link.timer = undefined;
    link.state = "closed";
    link.decoder.halt();
    this.#pending.delete(link);
    const peer = link.peerId === undefined ? undefined : this.#peers.get(link.peerId);
    if (peer?.inbound === link) {
      peer.inbound = undefined;
      this.#logger?.info({ peer: peer.nodeId, remote: link.remote }, "peer disconnected (inbound)");
    }
  }

  #scheduleRedial(peer: PeerState): void {
    const delay = reconnectDelayMs(
      peer.failures,
      this.#o.reconnectInitialMs,
      this.#o.reconnectMaxMs,
      this.#random(),
    );
    peer.failures++;
    peer.retryTimer = this.#runtime.after(delay, () => {
      peer.retryTimer = undefined;
      peer.reconnects++;
      this.#dial(peer);
    });
  }

  // ---- messages ------------------------------------------------------------------------------

  #deliver(link: Link, payload: Uint8Array): void {
    const from = link.peerId!;
    const peer = this.#peers.get(from);
    if (peer === undefined || peer.inbound !== link) return; // removed, or replaced by a newer connection
    peer.received++;
    const handler = this.#handler;
    if (handler === undefined) return;
    try {
      handler(from, payload);
    } catch (error) {
      // The handler's bug must not cost the connection (and every message behind this one).
      this.#logger?.error({ peer: from, err: error }, "peer message handler threw");
    }
  }

  #scheduleFlush(peer: PeerState): void {
    if (peer.flushDeferred || peer.outbound?.state !== "open") return;
    // Waiting for the end of this turn of the event loop lets the sends of one tick share a write.
    peer.flushDeferred = true;
    this.#runtime.defer(() => {
      peer.flushDeferred = false;
      this.#flush(peer);
    });
  }

  /** Writes queued messages in batches while the socket accepts them; resumes on 'drain'. */
  #flush(peer: PeerState): void {
    const link = peer.outbound;
    if (link === undefined || link.state !== "open" || link.waitingDrain) return;
    while (peer.queue.messages > 0) {
      const batch = peer.queue.take(this.#o.writeBatchBytesMax, this.#o.writeBatchMessagesMax);
      const frames = encodeFrameBatch(batch, this.#o.frameBytesMax, this.#core);
      peer.sent += batch.length;
      peer.sentBytes += frames.length;
      peer.writes++;
      if (!link.socket.write(frames)) {
        link.waitingDrain = true;
        link.socket.once("drain", () => {
          link.waitingDrain = false;
          if (peer.outbound === link) this.#flush(peer);
        });
        return;
      }
    }
  }
}

/**
 * The wait before dial attempt `failures + 1`: exponential from `initialMs`, capped at `maxMs`,
 * with "equal jitter" (half the delay fixed, half random), so that the nodes that lost the same
 * peer do not all dial it in the same instant, yet none retries in a tight loop.
 */
export function reconnectDelayMs(failures: number, initialMs: number, maxMs: number, random: number): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(failures, 30));
  // A broken random source (NaN, out of range) must not turn the backoff into a tight loop.
  const jitter = Number.isFinite(random) ? Math.min(Math.max(random, 0), 1) : 0.5;
  return ceiling / 2 + (jitter * ceiling) / 2;
}

function invalid(detail: string): never {
  throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", detail);
}

function checkInt(name: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!(Number.isSafeInteger(value) && value >= min && value <= max)) {
    invalid(`${name} must be an integer in [${min}, ${max}]: ${value}`);
  }
  return value;
}

function checkAddress(address: PeerAddress): void {
  if (typeof address?.host !== "string" || address.host.length === 0)
    invalid("peer host must be a non-empty string");
  checkInt("peer port", address.port, 1, 65535);
}
