/**
 * The federation sender's memory across two servers on one KV: A keeps each room's remote
 * servers (checked against the room head's state ID) and the servers after the last event it
 * prepared (used only for an event built on exactly that one). A remote member who joined, or
 * was kicked, through B changes the destinations of A's very next event.
 */
import { assertEquals } from "../assert.ts";
import { startSharedKvServers } from "./shared_kv_servers.ts";
import { FAST_HASHING } from "../routes/client_harness.ts";
import { member, publicRoom, say } from "../routes/sender_rooms.ts";
import { testServer } from "../domain/federation/remote_room_builder.ts";
import { appendRemoteJoin } from "../federation/remote_joins.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import type {
  FederationRequest,
  FederationResponse,
  FederationTransport,
} from "../../domain/ports/federation_transport.ts";

const SERVER = "a.test";
const alice = `@alice:${SERVER}`;
const bob = "@bob:b.test";

/** Records what each transaction carried, by destination. */
class Recorder implements FederationTransport {
  readonly sent: { destination: string; pdus: JsonObject[] }[] = [];

  request(request: FederationRequest): Promise<FederationResponse> {
    const body = request.body as { pdus?: JsonObject[] };
    this.sent.push({ destination: request.destination, pdus: body.pdus ?? [] });
    return Promise.resolve({ status: 200, body: { pdus: {} } });
  }

  /** The PDUs `destination` got: message bodies, or the membership of member events. */
  to(destination: string): string[] {
    return this.sent.filter((s) => s.destination === destination).flatMap((s) =>
      s.pdus.map((p) => {
        const content = p.content as JsonObject;
        return p.type === "m.room.message" ? String(content.body) : `member:${content.membership}`;
      })
    );
  }
}

Deno.test("coherence: a remote member joined or kicked through B changes A's next destinations", async () => {
  const transport = new Recorder();
  const { a, b, close } = await startSharedKvServers(
    { TESSERA_SERVER_NAME: SERVER },
    { federationTransport: transport, ...FAST_HASHING },
  );
  try {
    const roomId = await publicRoom(a, alice);
    // A prepares an event with nobody remote in the room (and keeps that).
    await say(a, roomId, alice, "before bob");
    await appendRemoteJoin(b.deps.eventStore, roomId, bob, await testServer("b.test", 2));
    await say(a, roomId, alice, "hello bob");
    await say(a, roomId, alice, "again");
    // Bob is kicked through B: B queues the kick for his server; A's next event is not.
    await member(b, roomId, bob, "leave", alice);
    await say(a, roomId, alice, "after the kick");
    await a.deps.federationSender.runOnce();
    assertEquals(transport.to("b.test"), ["hello bob", "again", "member:leave"]);
  } finally {
    close();
  }
});
