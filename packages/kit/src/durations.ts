import type { Duration } from "@taskmesh/contracts/gen/google/protobuf/duration";

/** Milliseconds as a protobuf Duration. */
export function toDuration(ms: number): Duration {
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: Math.round((ms % 1000) * 1_000_000) };
}

/** A protobuf Duration in milliseconds (undefined when unset). */
export function durationMs(d: Duration | undefined): number | undefined {
  return d === undefined ? undefined : Number(d.seconds) * 1000 + Math.round(d.nanos / 1_000_000);
}
