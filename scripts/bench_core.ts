/**
 * `deno task bench:core`: the protocol core's hot functions, timed in process and printed as
 * medians of five runs: one auth-rule check of a message against real auth state, and one scrypt
 * password hash at the server's default cost.
 */
import { KvEventStore } from "../kv/kv_event_store.ts";
import { resolveState } from "../domain/protocol/state_res/resolve_state.ts";
import { LocalEventSender } from "../domain/local_event_sender.ts";
import { signingKeyFromSeed } from "../domain/protocol/signing.ts";
import { authStateFromEvents, checkEventAuth } from "../domain/protocol/auth_rules.ts";
import { roomVersion } from "../domain/protocol/room_versions.ts";
import { toStoredRoomEvent } from "../domain/protocol/stored_events.ts";
import { PasswordHasher } from "../domain/accounts/password_hash.ts";
import { summarise } from "./bench_stats.ts";

const SERVER = "bench.test";
const RUNS = 5;

/** Microseconds per auth check of a member's message in a public room of 50 members. */
async function authCheckMicros(): Promise<number[]> {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvEventStore(kv, { resolver: resolveState });
    const signingKey = await signingKeyFromSeed(new Uint8Array(32).fill(9), "ed25519:b");
    const sender = new LocalEventSender({ store, serverName: SERVER, signingKey });
    const creator = `@creator:${SERVER}`;
    const { roomId } = await sender.createRoom({ version: "12", creator });
    const send = (user: string, type: string, stateKey: string | undefined, content: object) =>
      sender.send({ roomId, sender: user, type, stateKey, content: content as never });
    await send(creator, "m.room.member", creator, { membership: "join" });
    await send(creator, "m.room.join_rules", "", { join_rule: "public" });
    await send(creator, "m.room.power_levels", "", { users: {} });
    for (let i = 0; i < 49; i++) {
      await send(`@u${i}:${SERVER}`, "m.room.member", `@u${i}:${SERVER}`, { membership: "join" });
    }
    const sent = await send(`@u7:${SERVER}`, "m.room.message", undefined, { body: "hi" });
    const version = roomVersion("12")!;
    const event = toStoredRoomEvent((await store.getEvent(sent.eventId))!, version);
    const authEvents = [...(await store.getEvents(event.auth_events)).values()]
      .map((e) => toStoredRoomEvent(e, version));
    const createEvent = toStoredRoomEvent(
      (await store.getEvent(`$${roomId.slice(1)}`))!,
      version,
    );
    const state = authStateFromEvents(authEvents);
    const n = 200_000;
    const runs: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const start = performance.now();
      for (let i = 0; i < n; i++) {
        if (!checkEventAuth(event, state, version, { createEvent }).allowed) {
          throw new Error("the benchmark's message was refused");
        }
      }
      runs.push((performance.now() - start) * 1000 / n);
    }
    return runs;
  } finally {
    kv.close();
  }
}

/** Milliseconds per scrypt hash at the server's default parameters. */
async function scryptMillis(): Promise<number[]> {
  const hasher = new PasswordHasher();
  const runs: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const start = performance.now();
    await hasher.hash("correct horse battery staple");
    runs.push(performance.now() - start);
  }
  return runs;
}

const auth = await authCheckMicros();
const scrypt = await scryptMillis();
console.log(
  `# Tessera protocol core (Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs)`,
);
console.log(
  `auth rules, one message check: ${summarise(auth).median.toFixed(3)} µs (runs ${
    auth.map((v) => v.toFixed(3)).join(", ")
  })`,
);
console.log(
  `scrypt N=2^15 r=8 p=1, one hash: ${summarise(scrypt).median.toFixed(0)} ms (runs ${
    scrypt.map((v) => v.toFixed(0)).join(", ")
  })`,
);
