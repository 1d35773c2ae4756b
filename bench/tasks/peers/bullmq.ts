import { performance } from "node:perf_hooks";
import { FlowProducer, Queue, Worker, type FlowJob } from "bullmq";
import { CompletionLog } from "../completions.js";
import { uniqueSuffix } from "../infra.js";
import { measureBurst, measureSteady } from "../measure.js";
import { ECHO_INPUT, workflowLeaves, type EchoInput, type QueueRunner } from "../runner.js";

const QUEUE = "echo";
/** The name of a flow's jobs that have children. */
const FLOW_PARENT = "parent";

/**
 * BullMQ set up for throughput: one worker running 100 jobs at a time,
 * completed jobs removed at once (`removeOnComplete`), bursts added with
 * `addBulk` (one pipelined call per 1000 jobs).
 */
export const BULLMQ_CONFIG = Object.freeze({
  concurrency: 100,
  removeOnComplete: true,
  removeOnFail: 1000,
});

/**
 * BullMQ with its worker in this process, under a key prefix of its own.
 * Completion is the worker's `completed` event (emitted once the job has
 * been moved to completed in Redis).
 */
export async function bullmqRunner(infra: { redisUrl: string }): Promise<QueueRunner> {
  const { hostname, port } = new URL(infra.redisUrl);
  const connection = { host: hostname, port: Number(port), maxRetriesPerRequest: null };
  const prefix = `bench-bullmq-${uniqueSuffix()}`;
  const completions = new CompletionLog();
  const queue = new Queue<EchoInput, EchoInput>(QUEUE, {
    connection, prefix,
    defaultJobOptions: { removeOnComplete: BULLMQ_CONFIG.removeOnComplete, removeOnFail: BULLMQ_CONFIG.removeOnFail },
  });
  // A flow's parent (a job with children) answers its children's values, as a workflow task takes its dependencies' outputs.
  const worker = new Worker<EchoInput, unknown>(QUEUE, async (job) => (job.name === FLOW_PARENT ? job.getChildrenValues() : job.data), {
    connection, prefix, concurrency: BULLMQ_CONFIG.concurrency,
  });
  const flows = new FlowProducer({ connection, prefix });
  let failure: Error | undefined;
  const onError = (error: Error): void => {
    failure ??= error;
  };
  queue.on("error", onError);
  worker.on("error", onError);
  worker.on("completed", (job) => completions.record(String(job.id)));
  await Promise.all([queue.waitUntilReady(), worker.waitUntilReady()]);
  const check = (): void => {
    if (failure) throw new Error(`BullMQ reported an error: ${failure.message}`, { cause: failure });
  };

  return {
    name: "bullmq",
    burst: async (n) => {
      const result = await measureBurst(n, {
        completions,
        enqueue: async (count) => {
          await queue.addBulk(Array.from({ length: count }, () => ({ name: QUEUE, data: ECHO_INPUT })));
        },
        unfinished: async () => {
          const counts = await queue.getJobCounts("wait", "active", "delayed", "prioritized");
          return Object.values(counts).reduce((sum, count) => sum + count, 0);
        },
      });
      check();
      return result;
    },
    steady: async (rate, durationSec) => {
      const result = await measureSteady(rate, durationSec, completions, async () => {
        const job = await queue.add(QUEUE, ECHO_INPUT);
        return completions.completionOf(String(job.id));
      });
      check();
      return result;
    },
    workflow: async (tasks) => {
      // One flow (FlowProducer.add: every job of the tree in one multi-exec): the root after its parents, each after its leaves.
      const leaf = (): FlowJob => ({ name: QUEUE, queueName: QUEUE, data: ECHO_INPUT, opts: { removeOnComplete: true } });
      const tree: FlowJob = {
        name: FLOW_PARENT, queueName: QUEUE, data: ECHO_INPUT, opts: { removeOnComplete: true },
        children: workflowLeaves(tasks).map((n) => ({ name: FLOW_PARENT, queueName: QUEUE, data: ECHO_INPUT, opts: { removeOnComplete: true }, children: Array.from({ length: n }, leaf) })),
      };
      const t0 = performance.now();
      const added = await flows.add(tree);
      const doneAt = await completions.completionOf(String(added.job.id));
      check();
      const seconds = Math.max(doneAt - t0, 1) / 1000;
      return { tasks, seconds: Math.round(seconds * 1000) / 1000, tasksPerSec: Math.round(tasks / seconds) };
    },
    close: async () => {
      await worker.close();
      await flows.close();
      await queue.close();
    },
  };
}
