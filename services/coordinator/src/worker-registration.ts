import type { WorkerInfo } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import { Violations } from "@taskmesh/kit";
import { isCapabilityName } from "./validation.js";

const WORKER_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Checks a registration; INVALID_ARGUMENT (VAL_INVALID_REGISTRATION) with field violations. */
export function checkRegistration(info: WorkerInfo | undefined): WorkerInfo {
  const v = new Violations();
  const reason = "VAL_INVALID_REGISTRATION";
  if (!info) v.add("register.worker", "is required", reason);
  else {
    if (!WORKER_ID.test(info.workerId)) v.add("register.worker.worker_id", "must be 1..128 of A-Z a-z 0-9 . _ : -", reason);
    if (info.capabilities.length === 0) v.add("register.worker.capabilities", "at least one capability is required", reason);
    const names = new Set<string>();
    info.capabilities.forEach((c, i) => {
      if (!isCapabilityName(c.name)) v.add(`register.worker.capabilities[${i}].name`, "is not a capability name", reason);
      else if (names.has(c.name)) v.add(`register.worker.capabilities[${i}].name`, "is given twice", reason);
      names.add(c.name);
      if (c.maxConcurrency < 0 || c.maxConcurrency > 1000) v.add(`register.worker.capabilities[${i}].max_concurrency`, "must be 0..1000", reason);
    });
    if (info.maxConcurrency < 1 || info.maxConcurrency > 1000) v.add("register.worker.max_concurrency", "must be 1..1000", reason);
    if (info.weight < 0 || info.weight > 100) v.add("register.worker.weight", "must be 0..100 (0 for 1)", reason);
  }
  v.check();
  return info!;
}
