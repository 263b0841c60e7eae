/**
 * The Raft host: drives the consensus core with a clock, persists what it must, sends what it
 * may, applies what is committed, and tells the node of every change of leadership.
 */
export {
  LEADERSHIP_LISTENERS_MAX,
  Leadership,
  type LeadershipListener,
  type LeadershipState,
} from "./leadership.js";
export {
  HOST_DEFAULTS,
  type HostTransport,
  RaftHost,
  type RaftHostOptions,
  type StateMachine,
} from "./raft-host.js";
