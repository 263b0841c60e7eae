export { decodeConfChange, encodeConfChange } from "./conf-change.js";
export { RaftLog } from "./log.js";
export { EMPTY_CONF_STATE, limitSize, MemoryStorage } from "./memory-storage.js";
export { Inflights, Progress, type ProgressState } from "./progress.js";
export { type Proposed, RAFT_DEFAULTS, Raft, type RaftConfig } from "./raft.js";
export type { RaftLogStore, RaftStorage, RaftUpdate } from "./storage.js";
export * from "./types.js";
