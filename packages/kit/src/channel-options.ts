import type { ChannelOptions } from "@grpc/grpc-js";

/**
 * One keepalive profile for both ends, so a client never pings more often
 * than the server allows (a stricter client gets GOAWAY too_many_pings,
 * grpc-node#1164). Channelz stays off: it has leaked memory.
 */
export const KEEPALIVE = {
  /** Clients ping an idle connection this often. */
  clientPingMs: 30_000,
  /** Servers accept pings no more often than this. */
  serverMinPingMs: 10_000,
  /** How long to wait for a ping's answer before the connection is dead. */
  timeoutMs: 10_000,
} as const;

/** Options for every grpc-js server of the kit. */
export const serverChannelOptions: ChannelOptions = {
  "grpc.enable_channelz": 0,
  "grpc.keepalive_time_ms": 60_000,
  "grpc.keepalive_timeout_ms": KEEPALIVE.timeoutMs,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.min_ping_interval_without_data_ms": KEEPALIVE.serverMinPingMs,
  "grpc.http2.min_time_between_pings_ms": KEEPALIVE.serverMinPingMs,
  "grpc.max_receive_message_length": 4 * 1024 * 1024,
};

/**
 * Options for every grpc-js client of the kit. Reconnects back off from
 * 200 ms to at most 2 s (grpc-js: 1 s to 120 s): the peer is the local
 * sidecar or a loopback service, so a restarted one is found again within
 * seconds, not minutes.
 */
export const clientChannelOptions: ChannelOptions = {
  "grpc.enable_channelz": 0,
  "grpc.initial_reconnect_backoff_ms": 200,
  "grpc.max_reconnect_backoff_ms": 2000,
  "grpc.keepalive_time_ms": KEEPALIVE.clientPingMs,
  "grpc.keepalive_timeout_ms": KEEPALIVE.timeoutMs,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.max_receive_message_length": 4 * 1024 * 1024,
};
