/**
 * A room as another server holds it, built as plain signed events (no store): the material of
 * a `send_join` answer, for the pure checks' tests and the remote-join benchmark.
 */
import { buildEvent, type BuiltEvent } from "../../../domain/protocol/event_builder.ts";
import {
  type Pdu,
  type StateKey,
  stateKey,
  type StateMap,
} from "../../../domain/protocol/events.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import { type RoomVersion, roomVersion } from "../../../domain/protocol/room_versions.ts";
import { type SigningKey, signingKeyFromSeed } from "../../../domain/protocol/signing.ts";
import type { KeyRing } from "../../../domain/federation/key_ring.ts";
import { verifyEventSignatures } from "../../../domain/federation/event_signatures.ts";
import type { EventSignatureVerifier } from "../../../domain/federation/send_join_checks.ts";

/** A server of the test: its name and signing key. */
export interface TestServer {
  name: string;
  key: SigningKey;
}

/** A test server with a key derived from `fill`. */
export async function testServer(name: string, fill: number): Promise<TestServer> {
  return { name, key: await signingKeyFromSeed(new Uint8Array(32).fill(fill), "ed25519:t1") };
}

/** A key ring that knows exactly the given servers' keys. */
export function testKeyRing(servers: TestServer[]): KeyRing {
  return {
    verifyKey: (serverName, keyId) => {
      const server = servers.find((s) => s.name === serverName && s.key.keyId === keyId);
      return Promise.resolve(server?.key.publicKey);
    },
  };
}

/** The signature verifier over a test key ring. */
export function testVerifier(servers: TestServer[]): EventSignatureVerifier {
  const ring = testKeyRing(servers);
  return (pdu, version) => verifyEventSignatures(pdu, version, ring);
}

/** A room built event by event on one linear DAG. */
export class RemoteRoom {
  readonly events: BuiltEvent[] = [];
  readonly state: StateMap = new Map();
  readonly byId = new Map<string, BuiltEvent>();
  roomId = "";
  #clock = 1_000_000;

  private constructor(readonly version: RoomVersion, readonly server: TestServer) {}

  /** Create, the creator's join, power levels, public join rules, shared history. */
  static async create(
    versionId: string,
    server: TestServer,
    creator: string,
    levels: JsonObject = {},
  ): Promise<RemoteRoom> {
    const room = new RemoteRoom(roomVersion(versionId)!, server);
    if (!room.version.roomIdIsCreateEventHash) {
      room.roomId = `!${crypto.randomUUID().replaceAll("-", "").slice(0, 18)}:${server.name}`;
    }
    const content: JsonObject = { room_version: versionId };
    if (room.version.createHasCreatorField) content.creator = creator;
    const create = await room.add(creator, "m.room.create", content, "");
    room.roomId = create.event.room_id;
    await room.add(creator, "m.room.member", { membership: "join" }, creator);
    const users: JsonObject = room.version.privilegedCreators ? {} : { [creator]: 100 };
    await room.add(creator, "m.room.power_levels", { users, ...levels }, "");
    await room.add(creator, "m.room.join_rules", { join_rule: "public" }, "");
    await room.add(creator, "m.room.history_visibility", { history_visibility: "shared" }, "");
    return room;
  }

  /** Build the next event on the DAG, signed by `signer` (default: the room's server). */
  async add(
    sender: string,
    type: string,
    content: JsonObject,
    stateKey?: string,
    signer: TestServer = this.server,
  ): Promise<BuiltEvent> {
    const built = await this.build(sender, type, content, stateKey, signer);
    this.push(built);
    return built;
  }

  /** Build an event on the room's current DAG end without adding it. */
  build(
    sender: string,
    type: string,
    content: JsonObject,
    key?: string,
    signer: TestServer = this.server,
  ): Promise<BuiltEvent> {
    const last = this.events.at(-1);
    return buildEvent({
      version: this.version,
      roomId: type === "m.room.create" && this.version.roomIdIsCreateEventHash
        ? undefined
        : this.roomId,
      sender,
      type,
      stateKey: key,
      content,
      prevEvents: last ? [{ eventId: last.eventId, depth: last.pdu.depth }] : [],
      currentState: (k: StateKey) => {
        const id = this.state.get(k);
        return id === undefined ? undefined : { eventId: id };
      },
      serverName: signer.name,
      signingKey: signer.key,
      originServerTs: this.#clock++,
    });
  }

  /** Add an event built elsewhere (our join, say) to the DAG and the state. */
  push(built: BuiltEvent): void {
    this.events.push(built);
    this.byId.set(built.eventId, built);
    if (built.pdu.state_key !== undefined) {
      this.state.set(stateKey(built.pdu.type, built.pdu.state_key), built.eventId);
    }
  }

  /** `count` members of the room's server join, one after another. */
  async addMembers(count: number, prefix = "member"): Promise<void> {
    for (let i = 0; i < count; i++) {
      const user = `@${prefix}${i}:${this.server.name}`;
      await this.add(user, "m.room.member", { membership: "join" }, user);
    }
  }

  /** The current state's PDUs (a send_join answer's `state`). */
  statePdus(): Pdu[] {
    return [...this.state.values()].map((id) => this.byId.get(id)!.pdu);
  }

  /** The auth chain of the current state (a send_join answer's `auth_chain`). */
  authChainPdus(): Pdu[] {
    const seen = new Set<string>();
    const stack = [...this.state.values()];
    while (stack.length > 0) {
      const id = stack.pop()!;
      for (const authId of this.byId.get(id)!.event.auth_events) {
        if (!seen.has(authId)) {
          seen.add(authId);
          stack.push(authId);
        }
      }
    }
    return [...seen].map((id) => this.byId.get(id)!.pdu);
  }
}
