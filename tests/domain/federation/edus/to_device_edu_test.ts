/**
 * Outbound m.direct_to_device EDUs: recipients split into EDUs that each fit a KV value (the
 * outbox entry) whatever their characters, deterministic message IDs per part, and the size
 * bound holding for both the stored value and the JSON on the wire.
 */
import { assert, assertEquals } from "../../../assert.ts";
import {
  directToDeviceEdus,
  directToDeviceMessageId,
  fitsOneEdu,
  MAX_DIRECT_TO_DEVICE_EDU_BYTES,
  type RemoteToDeviceEntry,
  storedSizeBound,
} from "../../../../domain/federation/edus/to_device_edu.ts";
import type { JsonObject } from "../../../../domain/protocol/json.ts";

const source = {
  sender: "@alice:a.test",
  senderDeviceId: "ADEV",
  txnId: "txn1",
  eventType: "m.room.encrypted",
};

/** Text of about `chars` characters of one kind. */
function text(kind: string, chars: number): string {
  const unit = {
    ascii: "a",
    latin1: "é",
    cjk: "漢",
    emoji: "😀",
    escapes: '"\n\\\u0001',
  }[kind]!;
  return unit.repeat(Math.ceil(chars / unit.length));
}

Deno.test("every EDU fits a KV value and its bound, whatever the characters", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    for (const kind of ["ascii", "latin1", "cjk", "emoji", "escapes"]) {
      const entries: RemoteToDeviceEntry[] = [];
      for (let i = 0; i < 12; i++) {
        const content: JsonObject = { ciphertext: text(kind, 4_000 + 500 * i), n: i };
        entries.push({ userId: `@u${i % 5}:b.test`, deviceId: `D${i}`, content });
      }
      for (const entry of entries) assert(fitsOneEdu(source, entry));
      const edus = directToDeviceEdus(source, "b.test", entries);
      assert(edus.length > 1, `${kind}: split`);
      // Every entry is carried exactly once, in order.
      const carried = edus.flatMap((edu) =>
        Object.values(edu.content.messages as Record<string, Record<string, JsonObject>>)
          .flatMap((byDevice) => Object.values(byDevice).map((c) => c.n))
      );
      assertEquals(carried.sort((a, b) => Number(a) - Number(b)), entries.map((_, i) => i));
      for (const edu of edus) {
        const payload = { kind: "edu", edu_type: edu.edu_type, content: edu.content };
        assert(storedSizeBound(edu.content) <= MAX_DIRECT_TO_DEVICE_EDU_BYTES);
        const wire = new TextEncoder().encode(JSON.stringify(edu.content)).byteLength;
        assert(wire <= storedSizeBound(edu.content), `${kind}: wire ${wire}`);
        // KV refuses a value over 65,536 bytes: the outbox entry must be accepted.
        await kv.set(["edu", kind], payload);
      }
    }
  } finally {
    kv.close();
  }
});

Deno.test("message IDs are the same for the same request and part, different otherwise", () => {
  const id = directToDeviceMessageId(source, "b.test", 0);
  assertEquals(directToDeviceMessageId({ ...source }, "b.test", 0), id);
  const others = [
    directToDeviceMessageId(source, "b.test", 1),
    directToDeviceMessageId(source, "c.test", 0),
    directToDeviceMessageId({ ...source, txnId: "txn2" }, "b.test", 0),
    directToDeviceMessageId({ ...source, senderDeviceId: "OTHER" }, "b.test", 0),
  ];
  assertEquals(new Set([id, ...others]).size, 5);
  const edus = directToDeviceEdus(source, "b.test", [
    { userId: "@b:b.test", deviceId: "*", content: { n: 1 } },
  ]);
  assertEquals(edus.map((e) => e.content.message_id), [id]);
});

Deno.test("a message too large for one EDU is recognised before anything is built", () => {
  const entry = { userId: "@b:b.test", deviceId: "D", content: { big: text("ascii", 62_000) } };
  assert(!fitsOneEdu(source, entry));
  const wide = { userId: "@b:b.test", deviceId: "D", content: { big: text("cjk", 31_000) } };
  assert(!fitsOneEdu(source, wide));
  assert(fitsOneEdu(source, { ...wide, content: { big: text("cjk", 19_000) } }));
});
