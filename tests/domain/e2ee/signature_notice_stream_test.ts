/** The signature-notice stream: the signer's incremental syncs list the signed users once. */
import { assertEquals } from "../../assert.ts";
import { SignatureNoticeStream } from "../../../domain/e2ee/signature_notice_stream.ts";
import { emptySyncResponse } from "../../../domain/sync/sync_response.ts";
import type { SyncStreamRequest } from "../../../domain/sync/sync_stream.ts";

const ALICE = "@alice:example.org";

function request(since?: string): SyncStreamRequest {
  return {
    userId: ALICE,
    deviceId: "PHONE",
    since,
    upTo: "s2",
    fullState: false,
    filter: {},
    joinedRoomIds: [],
    now: 0,
  };
}

Deno.test("signature notices add their targets to device_lists.changed once", async () => {
  const asked: string[][] = [];
  const stream = new SignatureNoticeStream({
    signatureNoticeTargets: (signer, since, upTo) => {
      asked.push([signer, since, upTo]);
      return Promise.resolve(["@bob:example.org", "@carol:example.org"]);
    },
  });
  const response = emptySyncResponse("s2");
  // The device-list stream already listed Bob.
  response.device_lists.changed.push("@bob:example.org");
  await stream.fill(request("s1"), response);
  assertEquals(response.device_lists.changed, ["@bob:example.org", "@carol:example.org"]);
  assertEquals(asked, [[ALICE, "s1", "s2"]]);

  // A full sync carries no device-list changes and reads nothing.
  const initial = emptySyncResponse("s2");
  await stream.fill(request(), initial);
  assertEquals(initial.device_lists.changed, []);
  assertEquals(asked.length, 1);
});
