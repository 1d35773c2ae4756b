"""A taskmesh worker in Python: the `py-reverse` agent reverses `input.text`.

It speaks WorkerService/Connect, the protocol every worker speaks, with
stubs generated from proto/ (grpcio-tools): it registers its capability,
takes assignments, answers each with a result, heartbeats with the tasks it
holds, stops a task it is told to cancel, and drains on SIGTERM. Under
`taskmesh up`, `npx taskmesh worker examples/python-worker/worker.py` runs
it with its own sidecar (TASKMESH_UPSTREAM, its sidecar's outbound address,
carries it to a coordinator over mTLS) and reads its gRPC health on
TASKMESH_LISTEN, SERVING once registered.
"""
import os
import queue
import signal
import threading
import time
import uuid
from concurrent import futures

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from taskmesh.coordinator.v1 import worker_service_pb2 as ws
from taskmesh.coordinator.v1 import worker_service_pb2_grpc as ws_grpc
from taskmesh.task.v1 import task_pb2
from taskmesh.worker.v1 import worker_pb2

CAPABILITY = "py-reverse"
CONCURRENCY = 4


class AgentError(Exception):
    """A failure with a reason (UPPER_SNAKE with a class prefix) and whether a retry may help."""

    def __init__(self, message, reason="BIZ_HANDLER_FAILED", retryable=True):
        super().__init__(message)
        self.reason, self.retryable = reason, retryable


def reverse(task_input, cancelled):
    """The agent: answers {"text": reversed text}; a missing text is the caller's mistake."""
    text = task_input.get("text")
    if not isinstance(text, str):
        raise AgentError("text must be a string", reason="VAL_TEXT_REQUIRED", retryable=False)
    if cancelled.is_set():
        raise AgentError("cancelled", reason="BIZ_ABORTED", retryable=False)
    return {"text": text[::-1], "language": "python"}


class Worker:
    def __init__(self):
        self.worker_id = os.environ.get("TASKMESH_WORKER_ID") or str(uuid.uuid4())
        self.outbox = queue.Queue()  # ConnectRequests to send; None ends the stream
        self.held = {}  # task id -> (assignment, cancelled event)
        self.lock = threading.Lock()
        self.pool = futures.ThreadPoolExecutor(max_workers=CONCURRENCY)
        self.health = health.HealthServicer()
        self.stopping = threading.Event()

    def send(self, **payload):
        self.outbox.put(ws.ConnectRequest(**payload))

    def requests(self):
        while (request := self.outbox.get()) is not None:
            yield request

    def register(self):
        info = worker_pb2.WorkerInfo(
            worker_id=self.worker_id, name=self.worker_id, max_concurrency=CONCURRENCY, version="python-example", weight=1,
            capabilities=[worker_pb2.CapabilitySpec(name=CAPABILITY, max_concurrency=CONCURRENCY, description="reverses input.text (Python)")])
        self.send(register=ws.Register(worker=info))

    def heartbeat(self, interval):
        while not self.stopping.wait(interval):
            with self.lock:
                held = [worker_pb2.InFlightTask(task_id=a.task_id, attempt=a.attempt, lease_id=a.lease_id) for a, _ in self.held.values()]
            self.send(heartbeat=worker_pb2.Heartbeat(in_flight=held, load=len(held) / CONCURRENCY))

    def run(self, assignment):
        _, cancelled = self.held[assignment.task_id]
        started = time.monotonic()
        result = worker_pb2.TaskResult(task_id=assignment.task_id, attempt=assignment.attempt, lease_id=assignment.lease_id)
        try:
            output = reverse(json_format.MessageToDict(assignment.input), cancelled)
            result.succeeded.output.update(output)
        except Exception as error:  # any failure is the attempt's: an AgentError says why, anything else may be retried
            reason, retryable = (error.reason, error.retryable) if isinstance(error, AgentError) else ("BIZ_HANDLER_FAILED", True)
            result.failed.error.CopyFrom(task_pb2.TaskError(reason=reason, message=str(error)[:4096], retryable=retryable))
        result.elapsed.FromNanoseconds(int((time.monotonic() - started) * 1e9))
        with self.lock:
            self.held.pop(assignment.task_id, None)
        self.send(result=result)

    def serve(self):
        for response in ws_grpc.WorkerServiceStub(self.channel).Connect(self.requests()):
            kind = response.WhichOneof("payload")
            if kind == "registered":
                interval = response.registered.heartbeat_interval.ToMilliseconds() / 1000 or 5
                threading.Thread(target=self.heartbeat, args=(interval,), daemon=True).start()
                self.health.set("", health_pb2.HealthCheckResponse.SERVING)
                print(f"registered as {self.worker_id} with {CAPABILITY}", flush=True)
            elif kind == "assignment":
                assignment = response.assignment
                with self.lock:
                    self.held[assignment.task_id] = (assignment, threading.Event())
                self.pool.submit(self.run, assignment)
            elif kind == "cancel":
                with self.lock:
                    entry = self.held.get(response.cancel.task_id)
                if entry:
                    entry[1].set()
                self.send(cancel_acknowledged=ws.CancelAcknowledged(task_id=response.cancel.task_id, attempt=response.cancel.attempt, stopped=entry is not None))
            elif kind == "go_away":
                return

    def stop(self, *_):
        """SIGTERM: no new work; the tasks in hand finish, then the stream ends."""
        self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        self.send(drain_notice=ws.DrainNotice(reason="SIGTERM"))
        self.stopping.set()
        threading.Thread(target=lambda: (self.pool.shutdown(wait=True), self.outbox.put(None)), daemon=True).start()

    def main(self):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        server.add_insecure_port(os.environ.get("TASKMESH_LISTEN", "127.0.0.1:0"))
        server.start()
        signal.signal(signal.SIGTERM, self.stop)
        self.channel = grpc.insecure_channel(os.environ["TASKMESH_UPSTREAM"])
        self.register()
        try:
            self.serve()
        except grpc.RpcError as error:
            if not self.stopping.is_set():
                raise SystemExit(f"the coordinator's stream failed: {error.code().name} {error.details()}")
        server.stop(grace=1)


if __name__ == "__main__":
    Worker().main()
