import { Code, MeshError, notFound } from "@taskmesh/kit";

/** NOT_FOUND (`RES_TASK_NOT_FOUND`). */
export function taskNotFound(id: string): MeshError {
  return notFound("RES_TASK_NOT_FOUND", `no task ${id}`, { task_id: id });
}

/** NOT_FOUND (`RES_WORKER_NOT_FOUND`). */
export function workerNotFound(id: string): MeshError {
  return notFound("RES_WORKER_NOT_FOUND", `no worker ${id}`, { worker_id: id });
}

/** ABORTED (`RES_LEASE_LOST`): the caller no longer holds the task. */
export function leaseLost(taskId: string, leaseId: string): MeshError {
  return new MeshError({ code: Code.ABORTED, reason: "RES_LEASE_LOST", message: `lease ${leaseId} no longer holds task ${taskId}`, metadata: { task_id: taskId, lease_id: leaseId } });
}

/** ABORTED (`RES_SEQUENCE_MISMATCH`) with the actual sequence. */
export function sequenceMismatch(taskId: string, expected: bigint, actual: string): MeshError {
  return new MeshError({
    code: Code.ABORTED, reason: "RES_SEQUENCE_MISMATCH", message: `task ${taskId} is at sequence ${actual}, not ${expected}`,
    metadata: { task_id: taskId, expected_sequence: expected.toString(), actual_sequence: actual },
  });
}

/** FAILED_PRECONDITION (`BIZ_TASK_ALREADY_FINISHED`) with the state. */
export function alreadyFinished(taskId: string, state: string): MeshError {
  return new MeshError({ code: Code.FAILED_PRECONDITION, reason: "BIZ_TASK_ALREADY_FINISHED", message: `task ${taskId} already finished (${state})`, metadata: { task_id: taskId, state } });
}

/** FAILED_PRECONDITION (`BIZ_TASK_NOT_RUNNING`). */
export function notRunning(taskId: string, state: string): MeshError {
  return new MeshError({ code: Code.FAILED_PRECONDITION, reason: "BIZ_TASK_NOT_RUNNING", message: `task ${taskId} is not running`, metadata: { task_id: taskId, state } });
}

/** FAILED_PRECONDITION (`BIZ_WORKER_NOT_CONNECTED`). */
export function workerNotConnected(workerId: string, state: string): MeshError {
  return new MeshError({ code: Code.FAILED_PRECONDITION, reason: "BIZ_WORKER_NOT_CONNECTED", message: `worker ${workerId} is not connected`, metadata: { worker_id: workerId, state } });
}

/** ABORTED (`RES_SESSION_REPLACED`) with the current session. */
export function sessionReplaced(workerId: string, current: string): MeshError {
  return new MeshError({ code: Code.ABORTED, reason: "RES_SESSION_REPLACED", message: `worker ${workerId} has a newer session`, metadata: { worker_id: workerId, session_id: current } });
}

/** ALREADY_EXISTS for a reused idempotency key or task id, naming the existing task. */
export function alreadyExists(what: "key" | "id", taskId: string): MeshError {
  return new MeshError({
    code: Code.ALREADY_EXISTS,
    reason: what === "key" ? "RES_IDEMPOTENCY_KEY_REUSED" : "RES_TASK_ID_REUSED",
    message: what === "key" ? "the idempotency key was used by a different request" : "the task id was used by a different request",
    metadata: { task_id: taskId },
  });
}
