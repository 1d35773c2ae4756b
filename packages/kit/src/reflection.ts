import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Server } from "@grpc/grpc-js";
import type { PackageDefinition } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { projectRoot } from "./project-root.js";

/** Where `npm run generate` writes the descriptor set (every file, with imports). */
export const DESCRIPTOR_SET_PATH = join(projectRoot(import.meta.url), "packages/contracts/gen/descriptor.binpb");

/**
 * Splits a serialized `google.protobuf.FileDescriptorSet` into the raw bytes
 * of each `FileDescriptorProto`, untouched (options and all), by reading the
 * wire format: the set is just `repeated FileDescriptorProto file = 1`.
 */
export function splitDescriptorSet(set: Uint8Array): Buffer[] {
  const reader = new BinaryReader(set);
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType);
  }
  return files;
}

/**
 * Adds server reflection (v1 and v1alpha) for `services` (full names) to a
 * server, answering from the raw descriptors of the whole descriptor set so
 * that types imported across packages resolve (proto-loader's own conversion
 * breaks on those: grpc-node#3018).
 */
export function addReflection(server: Server, services: readonly string[], descriptorSet: Uint8Array = readFileSync(DESCRIPTOR_SET_PATH)): void {
  const fileDescriptorProtos = splitDescriptorSet(descriptorSet);
  // @grpc/reflection only reads `fileDescriptorProtos` off each entry.
  const definition = { descriptors: { fileDescriptorProtos } } as unknown as PackageDefinition;
  const reflection = new ReflectionService(definition, { services: [...services] });
  useDeclaredImports(reflection);
  reflection.addToServer(server);
}

/** The parts of @grpc/reflection's implementations that {@link useDeclaredImports} corrects. */
interface ReflectionIndex {
  files: Record<string, { dependency?: string[] }>;
  fileDependencies: Map<object, object[]>;
}

/**
 * @grpc/reflection works out a file's imports from the types it refers to,
 * so an answer leaves out imports used only for options (e.g.
 * `google/api/annotations.proto`) and a client that builds from one answer
 * fails. Each file's imports become the ones it declares. This reaches into
 * the package's internals (its v1 and v1alpha implementations); the
 * reflection tests guard it.
 */
function useDeclaredImports(reflection: ReflectionService): void {
  for (const key of ["v1", "v1Alpha"]) {
    const index = (reflection as unknown as Record<string, ReflectionIndex | undefined>)[key];
    if (!index?.files || !(index.fileDependencies instanceof Map)) throw new Error(`@grpc/reflection changed: no ${key} file index`);
    for (const file of Object.values(index.files)) {
      index.fileDependencies.set(file, (file.dependency ?? []).map((name) => index.files[name]).filter((f): f is { dependency?: string[] } => f !== undefined));
    }
  }
}
