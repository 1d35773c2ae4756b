import { createRequire } from "node:module";
import { credentials, loadPackageDefinition, type ClientDuplexStream, type GrpcObject, type ServiceClientConstructor } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileDescriptorProto } from "@taskmesh/contracts/gen/google/protobuf/descriptor";
import { ConfigServiceService } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { MeshServer, createLogger, type ServiceHandlers } from "@taskmesh/kit";

/** The reflection protos @grpc/reflection ships (the ones grpcurl speaks). */
const REFLECTION_PROTO = (version: "v1" | "v1alpha"): string =>
  createRequire(import.meta.url).resolve(`@grpc/reflection/build/proto/grpc/reflection/${version}/reflection.proto`);

interface ReflectionResponse {
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

/** A ServerReflectionInfo stream as a grpcurl-like tool would open it: one request, one answer. */
function reflectionClient(address: string, version: "v1" | "v1alpha") {
  const definition = loadSync(REFLECTION_PROTO(version), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = (loadPackageDefinition(definition).grpc as GrpcObject).reflection as GrpcObject;
  const Client = (pkg[version] as GrpcObject).ServerReflection as ServiceClientConstructor;
  const client = new Client(address, credentials.createInsecure());
  const ask = (request: Record<string, string>): Promise<ReflectionResponse> =>
    new Promise((resolve, reject) => {
      const call = (client as unknown as { ServerReflectionInfo(o: object): ClientDuplexStream<object, ReflectionResponse> })
        .ServerReflectionInfo({ deadline: Date.now() + 5000 });
      call.once("data", (response: ReflectionResponse) => {
        resolve(response);
        call.end();
      });
      call.once("error", reject);
      call.write({ host: "", ...request });
    });
  return { ask, close: () => client.close() };
}

const files = (response: ReflectionResponse) => (response.file_descriptor_response?.file_descriptor_proto ?? []).map((b) => FileDescriptorProto.decode(b));

const unused = async (): Promise<never> => {
  throw new Error("not used by this test");
};
const handlers: ServiceHandlers<typeof ConfigServiceService> = { get: unused, put: unused, delete: unused, list: unused, history: unused, watch: unused };

describe("server reflection of a MeshServer", () => {
  let server: MeshServer;
  let address: string;

  beforeAll(async () => {
    server = new MeshServer({ name: "reflection-test", logger: createLogger({ level: "silent" }) }).addService(ConfigServiceService, handlers);
    address = `127.0.0.1:${await server.listen("127.0.0.1:0")}`;
    server.markServing();
  });

  afterAll(async () => {
    expect(await server.shutdown()).toBe("drained");
  });

  it.each(["v1", "v1alpha"] as const)("lists the served services and health (%s)", async (version) => {
    const reflection = reflectionClient(address, version);
    try {
      const response = await reflection.ask({ list_services: "" });
      const names = response.list_services_response?.service.map((s) => s.name);
      expect(names).toEqual(expect.arrayContaining(["taskmesh.config.v1.ConfigService", "grpc.health.v1.Health"]));
    } finally {
      reflection.close();
    }
  });

  it("answers file_containing_symbol with the file and those of the types it uses across packages; every import resolves", async () => {
    const reflection = reflectionClient(address, "v1");
    try {
      const found = files(await reflection.ask({ file_containing_symbol: "taskmesh.config.v1.Entry" }));
      const names = found.map((f) => f.name);
      expect(names).toEqual(expect.arrayContaining(["taskmesh/config/v1/config.proto", "google/protobuf/struct.proto", "google/protobuf/timestamp.proto"]));
      // The one answer holds every file it imports, transitively, option-only imports included
      // (@grpc/reflection alone would send only the ones types refer to: the kit corrects it).
      for (const file of found) {
        for (const dependency of file.dependency) expect(names, `${file.name} imports ${dependency}`).toContain(dependency);
      }
      expect(names).toEqual(expect.arrayContaining(["google/api/annotations.proto", "google/api/http.proto", "google/protobuf/descriptor.proto"]));
      // And each can also be fetched by its file name, as grpcurl does.
      const known = new Map(found.map((f) => [f.name, f]));
      const pending = [...found];
      while (pending.length > 0) {
        for (const dependency of pending.pop()!.dependency) {
          if (known.has(dependency)) continue;
          const fetched = files(await reflection.ask({ file_by_filename: dependency }));
          expect(fetched[0]?.name, `import ${dependency}`).toBe(dependency);
          for (const file of fetched.filter((f) => !known.has(f.name))) {
            known.set(file.name, file);
            pending.push(file);
          }
        }
      }
      expect([...known.keys()]).toEqual(expect.arrayContaining(["google/api/annotations.proto", "google/api/http.proto", "google/protobuf/descriptor.proto"]));
      const config = found.find((f) => f.name === "taskmesh/config/v1/config.proto")!;
      expect(config.service.map((s) => s.name)).toEqual(["ConfigService"]);
      expect(config.messageType.find((m) => m.name === "Entry")?.field.find((f) => f.name === "value")?.typeName).toBe(".google.protobuf.Value");
    } finally {
      reflection.close();
    }
  });

  it("finds the file of a service and of an imported well-known type by name", async () => {
    const reflection = reflectionClient(address, "v1");
    try {
      expect(files(await reflection.ask({ file_containing_symbol: "taskmesh.config.v1.ConfigService" })).map((f) => f.name))
        .toContain("taskmesh/config/v1/config.proto");
      expect(files(await reflection.ask({ file_by_filename: "google/protobuf/struct.proto" }))[0]?.messageType.map((m) => m.name))
        .toEqual(expect.arrayContaining(["Struct", "Value", "ListValue"]));
    } finally {
      reflection.close();
    }
  });

  it("answers NOT_FOUND for a symbol it does not know", async () => {
    const reflection = reflectionClient(address, "v1");
    try {
      const response = await reflection.ask({ file_containing_symbol: "taskmesh.nope.v1.Missing" });
      expect(response.error_response?.error_code).toBe(5);
    } finally {
      reflection.close();
    }
  });
});
