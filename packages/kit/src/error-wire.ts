import { isReason } from "@taskmesh/contracts";
import { Metadata, type ServiceError, type StatusObject } from "@grpc/grpc-js";
import { Any } from "@taskmesh/contracts/gen/google/protobuf/any";
import { BadRequest, ErrorInfo, RetryInfo } from "@taskmesh/contracts/gen/google/rpc/error_details";
import { Status } from "@taskmesh/contracts/gen/google/rpc/status";
import { durationMs, toDuration } from "./durations.js";
import { Code, ERROR_DOMAIN, MeshError, type FieldViolation, type Reason } from "./errors.js";

/** The trailer that carries `google.rpc.Status` with the error details. */
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";

const TYPE_PREFIX = "type.googleapis.com/";

function pack(typeName: string, value: Uint8Array): Any {
  return { typeUrl: TYPE_PREFIX + typeName, value: Buffer.from(value) };
}

/** The `google.rpc.Status` a MeshError travels as. */
export function toRpcStatus(error: MeshError): Status {
  const details: Any[] = [
    pack("google.rpc.ErrorInfo", ErrorInfo.encode({ reason: error.reason, domain: ERROR_DOMAIN, metadata: { ...error.metadata } }).finish()),
  ];
  if (error.violations.length > 0) {
    const fieldViolations = error.violations.map((v) => ({ field: v.field, description: v.description, reason: v.reason ?? "", localizedMessage: undefined }));
    details.push(pack("google.rpc.BadRequest", BadRequest.encode({ fieldViolations }).finish()));
  }
  if (error.retryAfterMs !== undefined) {
    const retryDelay = toDuration(Math.max(0, Math.round(error.retryAfterMs)));
    details.push(pack("google.rpc.RetryInfo", RetryInfo.encode({ retryDelay }).finish()));
  }
  return { code: error.code, message: error.message, details };
}

/** A MeshError as the value of a `grpc-status-details-bin` header a proxy adds itself: the encoded `google.rpc.Status`, base64. */
export function statusDetailsValue(error: MeshError): string {
  return Buffer.from(Status.encode(toRpcStatus(error)).finish()).toString("base64");
}

/** The status object grpc-js sends for a MeshError: code, message and the details trailer. */
export function toStatusObject(error: MeshError): Partial<StatusObject> {
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_KEY, Buffer.from(Status.encode(toRpcStatus(error)).finish()));
  return { code: error.code, details: error.message, metadata };
}

/**
 * Decodes an error a grpc-js client received into a MeshError, with the
 * ErrorInfo, BadRequest and RetryInfo the server sent. Without details the
 * reason is `EXT_UPSTREAM_ERROR`.
 */
export function fromServiceError(error: ServiceError): MeshError {
  const raw = error.metadata?.get(STATUS_DETAILS_KEY)[0];
  let details: Any[] = [];
  if (raw instanceof Buffer) {
    try {
      details = Status.decode(raw).details;
    } catch {
      // Undecodable details: keep the code and message, which are still right.
    }
  }
  return fromDetails(error.code, error.details || error.message, details, error);
}

/** A `google.rpc.Status` (e.g. one item's error in a batch answer) as a MeshError. */
export function fromRpcStatus(status: Status): MeshError {
  return fromDetails(status.code, status.message, status.details, undefined);
}

function fromDetails(code: Code, message: string, details: readonly Any[], cause: unknown): MeshError {
  const init: {
    code: Code; reason: Reason; message: string; metadata?: Record<string, string>;
    violations?: FieldViolation[]; retryAfterMs?: number; cause: unknown;
  } = { code, reason: "EXT_UPSTREAM_ERROR", message, cause };
  try {
    for (const any of details) {
      const typeName = any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1);
      if (typeName === "google.rpc.ErrorInfo") {
        const info = ErrorInfo.decode(any.value);
        if (isReason(info.reason)) init.reason = info.reason as Reason;
        init.metadata = info.metadata;
      } else if (typeName === "google.rpc.BadRequest") {
        init.violations = BadRequest.decode(any.value).fieldViolations.map((v) => ({
          field: v.field, description: v.description, ...(v.reason ? { reason: v.reason } : {}),
        }));
      } else if (typeName === "google.rpc.RetryInfo") {
        const delay = durationMs(RetryInfo.decode(any.value).retryDelay);
        if (delay !== undefined) init.retryAfterMs = delay;
      }
    }
  } catch {
    // Undecodable details: keep the code and message, which are still right.
  }
  return new MeshError(init);
}
