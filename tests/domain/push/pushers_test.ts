import { assertEquals } from "../../assert.ts";
import {
  applyPusherSet,
  checkPusher,
  MAX_PUSHERS_PER_USER,
  type Pusher,
  type PusherSetRequest,
} from "../../../domain/push/pushers.ts";
import { pushAppends, tweaksOf } from "../../../domain/push/push_delivery.ts";
import { MatrixError } from "../../../domain/errors.ts";

const URL_OK = "https://push.example.org/_matrix/push/v1/notify";

function request(pushkey: string, extra: Partial<PusherSetRequest> = {}): PusherSetRequest {
  return {
    kind: "http",
    app_id: "app",
    pushkey,
    app_display_name: "App",
    device_display_name: "Phone",
    lang: "en",
    data: { url: URL_OK },
    ...extra,
  };
}

function errcodeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof MatrixError ? `${e.status} ${e.errcode}` : String(e);
  }
  return undefined;
}

Deno.test("pusher set: replace keeps the ID (and its queued pushes), kind null removes", () => {
  let n = 0;
  const ctx = (deviceId: string) => ({ deviceId, now: 1_000, newId: () => `id${++n}` });
  let pushers: Pusher[] = applyPusherSet([], request("k1"), ctx("D1"));
  pushers = applyPusherSet(pushers, request("k2"), ctx("D1"));
  assertEquals(pushers.map((p) => [p.id, p.pushkey]), [["id1", "k1"], ["id2", "k2"]]);
  pushers = applyPusherSet(pushers, request("k1", { lang: "de" }), ctx("D2"));
  const k1 = pushers.find((p) => p.pushkey === "k1")!;
  assertEquals([k1.id, k1.lang, k1.deviceId], ["id1", "de", "D2"]);
  pushers = applyPusherSet(pushers, { kind: null, app_id: "app", pushkey: "k2" }, ctx("D1"));
  assertEquals(pushers.map((p) => p.pushkey), ["k1"]);
  // Deleting what is not there changes nothing.
  assertEquals(
    applyPusherSet(pushers, { kind: null, app_id: "other", pushkey: "k1" }, ctx("D1")),
    pushers,
  );
});

Deno.test("pusher set: a user's pushers are capped", () => {
  let pushers: Pusher[] = [];
  const ctx = { deviceId: "D", now: 0, newId: () => crypto.randomUUID() };
  for (let i = 0; i < MAX_PUSHERS_PER_USER; i++) {
    pushers = applyPusherSet(pushers, request(`k${i}`), ctx);
  }
  assertEquals(
    errcodeOf(() => applyPusherSet(pushers, request("one more"), ctx)),
    "413 M_TOO_LARGE",
  );
  // Replacing one still works at the cap.
  assertEquals(applyPusherSet(pushers, request("k0"), ctx).length, MAX_PUSHERS_PER_USER);
});

Deno.test("pusher checks: HTTP pushers need a gateway URL with the spec's path", () => {
  assertEquals(errcodeOf(() => checkPusher(request("k"))), undefined);
  assertEquals(
    errcodeOf(() => checkPusher(request("k", { data: { url: "https://x.org/notify" } }))),
    "400 M_INVALID_PARAM",
  );
  assertEquals(
    errcodeOf(() =>
      checkPusher(request("k", { data: { url: "ftp://x.org/_matrix/push/v1/notify" } }))
    ),
    "400 M_INVALID_PARAM",
  );
  assertEquals(errcodeOf(() => checkPusher(request("k", { data: {} }))), "400 M_INVALID_PARAM");
  assertEquals(
    errcodeOf(() => checkPusher(request("k", { lang: undefined }))),
    "400 M_MISSING_PARAM",
  );
  assertEquals(
    errcodeOf(() => checkPusher(request("k", { data: { url: URL_OK, pad: "x".repeat(3000) } }))),
    "400 M_INVALID_PARAM",
  );
  // Only HTTP pushers are sent (no email notifications here); deletions need only the pair.
  assertEquals(
    errcodeOf(() => checkPusher(request("k", { kind: "email", data: {} }))),
    "400 M_INVALID_PARAM",
  );
  assertEquals(errcodeOf(() => checkPusher({ kind: null, app_id: "a", pushkey: "k" })), undefined);
});

Deno.test("push payloads: tweaks from actions, one outbox entry per pusher of each recipient", () => {
  assertEquals(
    tweaksOf(["notify", { set_tweak: "sound", value: "default" }, { set_tweak: "highlight" }]),
    { sound: "default", highlight: true },
  );
  assertEquals(tweaksOf(["notify", { set_tweak: "highlight", value: false }]), {
    highlight: false,
  });
  const p = (id: string, kind = "http") => ({ id, kind }) as Pusher;
  const appends = pushAppends(
    [
      {
        userId: "@a:x",
        roomId: "!r:x",
        position: 7,
        eventId: "$e",
        threadId: "main",
        highlight: false,
        actions: ["notify"],
        ts: 5,
      },
      {
        userId: "@b:x",
        roomId: "!r:x",
        position: 7,
        eventId: "$e",
        threadId: "main",
        highlight: false,
        actions: ["notify"],
        ts: 5,
      },
    ],
    new Map([["@a:x", [p("p1"), p("p2"), p("mail", "email")]]]),
  );
  assertEquals(appends.map((a) => [a.destination, a.order]), [["p1", [5, "!r:x", 7]], [
    "p2",
    [5, "!r:x", 7],
  ]]);
  assertEquals(appends[0].payload.event_id, "$e");
});
