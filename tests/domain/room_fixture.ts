/** A real event store on `:memory:` KV with a local sender, for tests that drive whole rooms. */
import { KvEventStore } from "../../kv/kv_event_store.ts";
import { resolveState } from "../../domain/protocol/state_res/resolve_state.ts";
import { LocalEventSender } from "../../domain/local_event_sender.ts";
import { signingKeyFromSeed } from "../../domain/protocol/signing.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

/** The test server's name. */
export const SERVER = "example.org";
/** Test users. */
export const ALICE = "@alice:example.org";
export const BOB = "@bob:example.org";
export const CAROL = "@carol:example.org";

/** Open a store and a sender; call `close()` when done. */
export async function openRoomFixture() {
  const kv = await Deno.openKv(":memory:");
  const store = new KvEventStore(kv, { resolver: resolveState });
  const signingKey = await signingKeyFromSeed(new Uint8Array(32).fill(7), "ed25519:test");
  let clock = 1_000;
  const sender = new LocalEventSender({
    store,
    serverName: SERVER,
    signingKey,
    now: () => clock++,
  });
  return { kv, store, sender, signingKey, close: () => kv.close() };
}

/** Create a public room as Alice: create, her join, power levels, join rules. */
export async function createPublicRoom(
  sender: LocalEventSender,
  version: string,
  powerLevels: JsonObject = {},
): Promise<string> {
  const { roomId } = await sender.createRoom({ version, creator: ALICE });
  const send = (type: string, content: JsonObject, stateKey = "") =>
    sender.send({ roomId, sender: ALICE, type, stateKey, content });
  await send("m.room.member", { membership: "join" }, ALICE);
  const users: JsonObject = version === "12" ? {} : { [ALICE]: 100 };
  await send("m.room.power_levels", { users, ...powerLevels });
  await send("m.room.join_rules", { join_rule: "public" });
  return roomId;
}
