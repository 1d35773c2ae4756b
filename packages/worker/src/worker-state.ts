/**
 * The life of a worker: `idle` → `connecting` (opening the stream, or
 * waiting to reconnect) ⇄ `registered` → `draining` (no new work; finishing
 * what it holds) → `stopped`. Any other transition throws.
 */
export type WorkerState = "idle" | "connecting" | "registered" | "draining" | "stopped";

const TRANSITIONS: Record<WorkerState, readonly WorkerState[]> = {
  idle: ["connecting", "stopped"],
  connecting: ["registered", "draining", "stopped"],
  registered: ["connecting", "draining", "stopped"],
  draining: ["stopped"],
  stopped: [],
};

/** Throws unless a worker may go from `current` to `next`. */
export function checkTransition(current: WorkerState, next: WorkerState): void {
  if (!TRANSITIONS[current].includes(next)) throw new Error(`illegal worker transition ${current} → ${next}`);
}
