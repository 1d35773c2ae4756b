import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { DESCRIPTOR_SET_PATH, projectRoot, splitDescriptorSet } from "@taskmesh/kit";

/** Where `npm run generate` writes Envoy's rate limit service and its imports. */
export const RATELIMIT_DESCRIPTOR_SET_PATH = join(projectRoot(import.meta.url), "packages/contracts/gen/envoy-ratelimit.binpb");

/** The `name` (field 1) of a serialized FileDescriptorProto. */
function fileName(file: Uint8Array): string | undefined {
  const reader = new BinaryReader(file);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) return reader.string();
    reader.skip(wireType);
  }
  return undefined;
}

/** Joins serialized FileDescriptorSets into one, each file once (the first copy wins). */
export function mergeDescriptorSets(...sets: Uint8Array[]): Uint8Array {
  const seen = new Set<string>();
  const writer = new BinaryWriter();
  for (const file of sets.flatMap((set) => splitDescriptorSet(set))) {
    const name = fileName(file);
    if (name === undefined || seen.has(name)) continue;
    seen.add(name);
    writer.tag(1, WireType.LengthDelimited).bytes(file);
  }
  return writer.finish();
}

/**
 * What the ratelimit service's reflection answers from: Envoy's rate limit
 * service (kept out of packages/contracts/gen/descriptor.binpb, which serves our own
 * contracts) together with that set, for health.
 */
export function ratelimitDescriptorSet(): Uint8Array {
  return mergeDescriptorSets(readFileSync(RATELIMIT_DESCRIPTOR_SET_PATH), readFileSync(DESCRIPTOR_SET_PATH));
}
