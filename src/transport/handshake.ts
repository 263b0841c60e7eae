import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { pack, unpack } from "msgpackr";

/**
 * The peer handshake: mutual challenge-response over a shared cluster secret, which never
 * travels. Every message is one MessagePack map in one frame.
 *
 * ```
 * dialer                                             listener
 *   hello     { protocol, clusterId, nodeId, nonceD } ─▶  checks protocol, cluster, node known
 *            ◀─ challenge { protocol, nodeId, nonceL, proofL }
 * checks it dialed the right node and proofL
 *   proof     { proofD }                            ─▶  checks proofD
 *            ◀─ welcome {}
 *   (frames of opaque messages, dialer → listener only)
 * ```
 *
 * `proofX = HMAC-SHA256(secret, label(X's role) | protocol | clusterId | dialerId | listenerId |
 * nonceD | nonceL)`. Both fresh nonces make a proof useless on any other connection, and the role
 * label makes the listener's proof useless as a dialer's (no reflection). Either side may send
 * `refused { reason }` instead of its next step and close, so both ends can log why.
 *
 * The handshake authenticates the peer at connection time only: the stream after it is neither
 * encrypted nor MACed, so a network that can splice TCP streams needs TLS underneath.
 */

export const PEER_PROTOCOL_VERSION = 1;
export const HANDSHAKE_NONCE_BYTES = 32;
export const HANDSHAKE_PROOF_BYTES = 32;
/** Frames before authentication are small: a stranger cannot make a node hold more than this. */
export const HANDSHAKE_FRAME_BYTES_MAX = 1024;
export const CLUSTER_ID_BYTES_MAX = 256;
/** A shared secret shorter than this is refused when a transport is created. */
export const SECRET_BYTES_MIN = 16;

export type RefusalReason =
  | "protocol-version"
  | "cluster-mismatch"
  | "unknown-node"
  | "wrong-node"
  | "bad-proof"
  | "malformed"
  | "unexpected-message";

const refusalReasons: ReadonlySet<string> = new Set<RefusalReason>([
  "protocol-version",
  "cluster-mismatch",
  "unknown-node",
  "wrong-node",
  "bad-proof",
  "malformed",
  "unexpected-message",
]);

export interface Hello {
  readonly kind: "hello";
  readonly protocol: number;
  readonly clusterId: string;
  readonly nodeId: number;
  readonly nonce: Uint8Array;
  /** See `Challenge.bootstrap`. */
  readonly bootstrap?: string;
}

export interface Challenge {
  readonly kind: "challenge";
  readonly protocol: number;
  readonly nodeId: number;
  readonly nonce: Uint8Array;
  readonly proof: Uint8Array;
  /**
   * The voters this node's data was bootstrapped with (`bootstrapFingerprint`); absent on a node
   * that joined. Two nodes bootstrapped from different `--cluster` lists wrote different entries
   * at the same index and term 1, which Raft's log matching cannot survive: they must not talk.
   */
  readonly bootstrap?: string;
}

export const BOOTSTRAP_FINGERPRINT_BYTES_MAX = 256;

/** The sorted voter ids, readable when short, else a digest of them. */
export function bootstrapFingerprint(voters: readonly number[]): string {
  const list = [...voters].sort((a, b) => a - b).join(",");
  return list.length <= BOOTSTRAP_FINGERPRINT_BYTES_MAX
    ? list
    : `sha256:${createHash("sha256").update(list).digest("hex")}`;
}

export interface Proof {
  readonly kind: "proof";
  readonly proof: Uint8Array;
}

export interface Welcome {
  readonly kind: "welcome";
}

export interface Refused {
  readonly kind: "refused";
  readonly reason: RefusalReason;
  /** What the listener expected, for the dialer's log (a cluster id mismatch names the expected id). */
  readonly detail?: string;
  /**
   * On a hello that is not a peer's (a client dialed the peer port by mistake): which node this
   * is and where its clients connect, so the client can say "its client port is …".
   */
  readonly nodeId?: number;
  readonly client?: string;
}

/** A refusal's detail is for logs: bounded, so a stranger cannot make us log megabytes. */
export const REFUSAL_DETAIL_BYTES_MAX = 512;
/** host:port; a longer one is dropped from a refusal rather than trusted. */
export const CLIENT_ADDRESS_BYTES_MAX = 256;

export type HandshakeMessage = Hello | Challenge | Proof | Welcome | Refused;

export type Decoded =
  | { readonly ok: true; readonly message: HandshakeMessage }
  /** `protocol-version`: a well-formed hello or challenge of another version; `malformed`: anything else. */
  | { readonly ok: false; readonly reason: "protocol-version" | "malformed"; readonly detail: string };

export function encodeHandshake(message: HandshakeMessage): Uint8Array {
  return pack(message);
}

/** Decodes and validates a handshake frame from an unauthenticated stranger; never throws. */
export function decodeHandshake(payload: Uint8Array): Decoded {
  let value: unknown;
  try {
    value = unpack(payload);
  } catch (error) {
    return { ok: false, reason: "malformed", detail: `not MessagePack: ${(error as Error).message}` };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, reason: "malformed", detail: "not a map" };
  }
  const m = value as Record<string, unknown>;
  const malformed = (detail: string): Decoded => ({ ok: false, reason: "malformed", detail });
  switch (m.kind) {
    case "hello":
    case "challenge": {
      // The version is judged first: a future version may change every other field.
      if (typeof m.protocol !== "number") return malformed(`${m.kind} without a protocol version`);
      if (m.protocol !== PEER_PROTOCOL_VERSION) {
        return { ok: false, reason: "protocol-version", detail: `protocol ${m.protocol}` };
      }
      if (!isNodeId(m.nodeId)) return malformed(`${m.kind}: bad nodeId`);
      if (!isBytes(m.nonce, HANDSHAKE_NONCE_BYTES)) return malformed(`${m.kind}: bad nonce`);
      if (
        m.bootstrap !== undefined &&
        (typeof m.bootstrap !== "string" || m.bootstrap.length > BOOTSTRAP_FINGERPRINT_BYTES_MAX + 7)
      )
        return malformed(`${m.kind}: bad bootstrap`);
      const bootstrap = typeof m.bootstrap === "string" ? { bootstrap: m.bootstrap } : {};
      if (m.kind === "hello") {
        if (!isClusterId(m.clusterId)) return malformed("hello: bad clusterId");
        return {
          ok: true,
          message: {
            kind: "hello",
            protocol: m.protocol,
            clusterId: m.clusterId,
            nodeId: m.nodeId,
            nonce: m.nonce,
            ...bootstrap,
          },
        };
      }
      if (!isBytes(m.proof, HANDSHAKE_PROOF_BYTES)) return malformed("challenge: bad proof");
      return {
        ok: true,
        message: {
          kind: "challenge",
          protocol: m.protocol,
          nodeId: m.nodeId,
          nonce: m.nonce,
          proof: m.proof,
          ...bootstrap,
        },
      };
    }
    case "proof":
      if (!isBytes(m.proof, HANDSHAKE_PROOF_BYTES)) return malformed("proof: bad proof");
      return { ok: true, message: { kind: "proof", proof: m.proof } };
    case "welcome":
      return { ok: true, message: { kind: "welcome" } };
    case "refused":
      return {
        ok: true,
        message: {
          kind: "refused",
          // A reason from a newer peer is still a refusal; only its name is lost.
          reason:
            typeof m.reason === "string" && refusalReasons.has(m.reason)
              ? (m.reason as RefusalReason)
              : "malformed",
          ...(typeof m.detail === "string" ? { detail: m.detail.slice(0, REFUSAL_DETAIL_BYTES_MAX) } : {}),
          ...(Number.isSafeInteger(m.nodeId) && (m.nodeId as number) >= 0
            ? { nodeId: m.nodeId as number }
            : {}),
          ...(typeof m.client === "string" && m.client.length <= CLIENT_ADDRESS_BYTES_MAX
            ? { client: m.client }
            : {}),
        },
      };
    default:
      return malformed(`unknown kind ${JSON.stringify(String(m.kind)).slice(0, 40)}`);
  }
}

/** What both proofs cover: everything either side said, so no part can be swapped. */
export interface Transcript {
  readonly clusterId: string;
  readonly dialerId: number;
  readonly listenerId: number;
  readonly dialerNonce: Uint8Array;
  readonly listenerNonce: Uint8Array;
}

export function handshakeProof(secret: Uint8Array, role: "dialer" | "listener", t: Transcript): Uint8Array {
  const hmac = createHmac("sha256", secret);
  // Every field is length-prefixed so that no two transcripts share an encoding.
  const field = (bytes: Uint8Array) => {
    const length = Buffer.alloc(4);
    length.writeUInt32LE(bytes.length);
    hmac.update(length);
    hmac.update(bytes);
  };
  const u53 = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeDoubleLE(n);
    return b;
  };
  field(Buffer.from(`metaraft/peer-handshake/${role}`));
  field(u53(PEER_PROTOCOL_VERSION));
  field(Buffer.from(t.clusterId, "utf8"));
  field(u53(t.dialerId));
  field(u53(t.listenerId));
  field(t.dialerNonce);
  field(t.listenerNonce);
  return new Uint8Array(hmac.digest());
}

/** Constant-time comparison, so a forger learns nothing from how fast a guess fails. */
export function proofMatches(expected: Uint8Array, received: Uint8Array): boolean {
  return expected.length === received.length && timingSafeEqual(expected, received);
}

/** Nonces come from the system's CSPRNG, never from the injectable `random` (which only jitters). */
export function newNonce(): Uint8Array {
  return new Uint8Array(randomBytes(HANDSHAKE_NONCE_BYTES));
}

export function isNodeId(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

export function isClusterId(value: unknown): value is string {
  return typeof value === "string" && value.length > 0 && Buffer.byteLength(value) <= CLUSTER_ID_BYTES_MAX;
}

function isBytes(value: unknown, length: number): value is Uint8Array {
  return value instanceof Uint8Array && value.length === length;
}
