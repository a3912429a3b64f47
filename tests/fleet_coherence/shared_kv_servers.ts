/**
 * Two in-process servers (the real `assembleServer`) over ONE `Deno.Kv` handle: two isolates of
 * one deployment. Each has its own memory (caches, queues, views), so a change made through one
 * and observed through the other on the very next request shows that no memory of the observer
 * kept it from seeing the change.
 */
import { startTestServer } from "../routes/test_server.ts";
import { FAST_HASHING } from "../routes/client_harness.ts";

/** One of the servers: what `startTestServer` returns. */
export type SharedKvServer = Awaited<ReturnType<typeof startTestServer>>;

/** The pair, the database they share, and `close()` for all of it. */
export interface SharedKvServers {
  a: SharedKvServer;
  b: SharedKvServer;
  kv: Deno.Kv;
  close(): void;
}

/** The client API root the tests use. */
export const V3 = "/_matrix/client/v3";

/** Start A and B over one `:memory:` KV (one server name: they are one homeserver). */
export async function startSharedKvServers(
  env: Record<string, string> = {},
): Promise<SharedKvServers> {
  const kv = await Deno.openKv(":memory:");
  // Local wake-ups only: these tests read with plain requests, never long-polls across servers.
  // Rate limits (shared across the fleet, tested on their own) would only slow the sequences.
  const shared = { TESSERA_WAKE: "local", TESSERA_RATE_LIMITS: "off", ...env };
  const a = await startTestServer(shared, FAST_HASHING, kv);
  const b = await startTestServer(shared, FAST_HASHING, kv);
  return {
    a,
    b,
    kv,
    close: () => {
      a.close();
      b.close();
      kv.close();
    },
  };
}

/** A user-interactive auth body for m.login.password. */
export function passwordAuth(user: string, password: string, session?: string) {
  return {
    type: "m.login.password",
    identifier: { type: "m.id.user", user },
    password,
    ...(session ? { session } : {}),
  };
}
