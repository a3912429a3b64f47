/**
 * Two in-process servers (the real `assembleServer`) over ONE `Deno.Kv` handle: two isolates of
 * one deployment. Each has its own memory (caches, queues, views), so a change made through one
 * and observed through the other on the very next request shows that no memory of the observer
 * kept it from seeing the change.
 */
import { startTestServer } from "../routes/test_server.ts";
import {
  createPublicRoom,
  FAST_HASHING,
  joinRoom,
  type RegisteredUser,
  registerUser,
} from "../routes/client_harness.ts";

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

/**
 * Start A and B over one `:memory:` KV (one server name: they are one homeserver), both with
 * `env` and the assembly `options` (fast password hashing unless given others).
 */
export async function startSharedKvServers(
  env: Record<string, string> = {},
  options: Parameters<typeof startTestServer>[1] = FAST_HASHING,
): Promise<SharedKvServers> {
  const kv = await Deno.openKv(":memory:");
  // Local wake-ups unless a test long-polls across the servers: its plain requests need none.
  // Rate limits (shared across the fleet, tested on their own) would only slow the sequences.
  const shared = { TESSERA_WAKE: "local", TESSERA_RATE_LIMITS: "off", ...env };
  const a = await startTestServer(shared, options, kv);
  const b = await startTestServer(shared, options, kv);
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

/** The pair with a room: Alice registered on B, Bob on A, both in Alice's public room. */
export interface SharedKvRoom extends SharedKvServers {
  alice: RegisteredUser;
  bob: RegisteredUser;
  roomId: string;
}

/** Start A and B (as `startSharedKvServers(env)`), then the users and room of `SharedKvRoom`. */
export async function startSharedKvRoom(env: Record<string, string> = {}): Promise<SharedKvRoom> {
  const servers = await startSharedKvServers(env);
  try {
    const { a, b } = servers;
    const alice = await registerUser(b, "alice");
    const bob = await registerUser(a, "bob");
    const roomId = await createPublicRoom(b, alice);
    await joinRoom(a, bob, roomId);
    return { ...servers, alice, bob, roomId };
  } catch (error) {
    servers.close();
    throw error;
  }
}
