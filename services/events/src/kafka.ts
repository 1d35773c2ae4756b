import { Kafka, Partitioners, logLevel, type Admin, type LogEntry, type Producer } from "kafkajs";
import { MeshError, unavailable, type Logger } from "@taskmesh/kit";

/** A kafkajs client whose log goes to the service's logger (errors as warnings, the rest at debug). */
export function createKafka(brokers: readonly string[], clientId: string, log: Logger): Kafka {
  return new Kafka({
    clientId,
    brokers: [...brokers],
    logLevel: logLevel.WARN,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
    logCreator: () => ({ level, log: entry }: LogEntry) => {
      const { message, ...rest } = entry;
      if (level <= logLevel.ERROR) log.warn({ kafka: rest }, `kafka: ${message}`);
      else log.debug({ kafka: rest }, `kafka: ${message}`);
    },
  });
}

/** Any Kafka failure as the contract answers it: UNAVAILABLE (EXT_KAFKA_UNAVAILABLE) with RetryInfo; MeshErrors pass. */
export function kafkaUnavailable(error: unknown): MeshError {
  if (error instanceof MeshError) return error;
  return unavailable("EXT_KAFKA_UNAVAILABLE", "Kafka cannot be reached; retry", 1000, error);
}

/**
 * The service's one idempotent producer and admin client, connected on
 * first use and again after a failure.
 */
export class KafkaClients {
  #producer: Promise<Producer> | undefined;
  #admin: Promise<Admin> | undefined;

  constructor(readonly kafka: Kafka) {}

  producer(): Promise<Producer> {
    this.#producer ??= (async () => {
      const p = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
      await p.connect();
      return p;
    })().catch((error: unknown) => {
      this.#producer = undefined;
      throw kafkaUnavailable(error);
    });
    return this.#producer;
  }

  admin(): Promise<Admin> {
    this.#admin ??= (async () => {
      const a = this.kafka.admin();
      await a.connect();
      return a;
    })().catch((error: unknown) => {
      this.#admin = undefined;
      throw kafkaUnavailable(error);
    });
    return this.#admin;
  }

  /** Runs `op` on the admin client; a failure drops the client (the next call reconnects) and maps to UNAVAILABLE. */
  async withAdmin<T>(op: (admin: Admin) => Promise<T>): Promise<T> {
    const admin = await this.admin();
    try {
      return await op(admin);
    } catch (error) {
      if (error instanceof MeshError) throw error;
      throw kafkaUnavailable(error);
    }
  }

  /** The topic's partition numbers, or undefined when it does not exist. */
  async partitionsOf(topic: string): Promise<number[] | undefined> {
    return this.withAdmin(async (admin) => {
      try {
        const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
        return topics[0]?.partitions.map((p) => p.partitionId).sort((a, b) => a - b);
      } catch (error) {
        if ((error as { type?: string }).type === "UNKNOWN_TOPIC_OR_PARTITION") return undefined;
        throw error;
      }
    });
  }

  async close(): Promise<void> {
    const [producer, admin] = [this.#producer, this.#admin];
    this.#producer = this.#admin = undefined;
    await Promise.all([
      producer?.then((p) => p.disconnect()).catch(() => undefined),
      admin?.then((a) => a.disconnect()).catch(() => undefined),
    ]);
  }
}
