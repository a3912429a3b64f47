/**
 * Starting the long-polls of the wake tests: a /sync filter that lets only the sections under
 * test end the wait, and a long-poll started on one server of a shared-KV pair that resolves
 * once it really waits on other processes' commits, so what the test does next exercises the
 * wake, not the first read.
 */
import type { JsonObject } from "../../domain/protocol/json.ts";
import type { PollWakeSource, WatchWakeSource } from "../../kv/wake_sources.ts";
import { assertEquals } from "../assert.ts";
import { guardWithin } from "../guard.ts";
import { type SharedKvServer, V3 } from "../fleet_coherence/shared_kv_servers.ts";

/** The sync sections a filter can leave in (device lists cannot be filtered out: none does). */
export type SyncSection = "timeline" | "ephemeral" | "account_data" | "presence" | "device_lists";

/** A URL-encoded /sync filter showing only `sections` (the others emptied). */
export function syncFilterShowing(...sections: SyncSection[]): string {
  const none = { types: [] };
  const shown = (section: SyncSection) => sections.includes(section) ? {} : none;
  const filter: JsonObject = {
    presence: shown("presence"),
    account_data: shown("account_data"),
    room: {
      timeline: shown("timeline"),
      state: none,
      account_data: none,
      ephemeral: shown("ephemeral"),
    },
  };
  return encodeURIComponent(JSON.stringify(filter));
}

/** Timeline-only syncs: presence and the like cannot end the wait first. */
export const TIMELINE_ONLY = syncFilterShowing("timeline");

/** Far longer than a long-poll takes to start waiting. */
const guarded = guardWithin(30_000);

/**
 * Start the long-poll `GET path` on `server` and resolve once it waits on other processes'
 * commits: its notifier watches, and its wake source holds one more subscription than before
 * (the outbox workers may hold some of their own). `response` is the answer to come.
 */
export async function startCrossProcessLongPoll(
  server: SharedKvServer,
  path: string,
  token: string,
): Promise<{ response: ReturnType<SharedKvServer["request"]> }> {
  const source = server.wakeSource as PollWakeSource | WatchWakeSource;
  const before = source.subscriptionCount;
  const response = server.request("GET", path, { token });
  await guarded(
    (async () => {
      while (server.deps.syncNotifier.watching === 0 || source.subscriptionCount <= before) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })(),
    "the long-poll starting its wait",
  );
  return { response };
}

/**
 * Sync once on `server` with `filter`, then start a long-poll (60 s) from there that waits on
 * other processes' commits (`startCrossProcessLongPoll`). `since` is where the first sync ended.
 */
export async function longPollAfterSync(
  server: SharedKvServer,
  token: string,
  filter: string,
): Promise<{ since: string; response: ReturnType<SharedKvServer["request"]> }> {
  const first = await server.request("GET", `${V3}/sync?filter=${filter}`, { token });
  assertEquals(first.status, 200);
  const since: string = first.body.next_batch;
  const { response } = await startCrossProcessLongPoll(
    server,
    `${V3}/sync?filter=${filter}&timeout=60000&since=${since}`,
    token,
  );
  return { since, response };
}
