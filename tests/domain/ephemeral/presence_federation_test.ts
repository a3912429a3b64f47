/**
 * The pure parts of presence across servers: reading one inbound `push` entry, the EDU entry
 * sent for a local user, and how a remote user's stored presence shows as time passes.
 */
import assert from "node:assert/strict";
import { parsePresencePush, presencePush } from "../../../domain/federation/edus/presence_edu.ts";
import {
  FEDERATION_TIMEOUT_MS,
  presenceContent,
  visiblyChanged,
} from "../../../domain/ephemeral/presence_service.ts";

const NOW = 1_700_000_000_000;

Deno.test("presence push: a well-formed entry becomes a remote record received now", () => {
  assert.deepEqual(
    parsePresencePush(
      {
        user_id: "@bob:b.test",
        presence: "online",
        last_active_ago: 5000,
        currently_active: true,
        status_msg: "here",
      },
      "b.test",
      NOW,
    ),
    {
      userId: "@bob:b.test",
      presence: "online",
      receivedTs: NOW,
      lastActiveTs: NOW - 5000,
      currentlyActive: true,
      statusMsg: "here",
    },
  );
  // Optional fields may be absent or null (Synapse leaves status_msg out when empty).
  assert.deepEqual(
    parsePresencePush(
      { user_id: "@bob:b.test", presence: "offline", status_msg: null, currently_active: null },
      "b.test",
      NOW,
    ),
    { userId: "@bob:b.test", presence: "offline", receivedTs: NOW, currentlyActive: false },
  );
  // A last_active_ago past the epoch is clamped, not a negative timestamp.
  assert.equal(
    parsePresencePush(
      { user_id: "@bob:b.test", presence: "online", last_active_ago: NOW * 2 },
      "b.test",
      NOW,
    )?.lastActiveTs,
    0,
  );
});

Deno.test("presence push: entries of another server's users or with bad fields are refused", () => {
  const good = { user_id: "@bob:b.test", presence: "online" };
  const bad: unknown[] = [
    null,
    [],
    { ...good, user_id: "@bob:c.test" },
    { ...good, user_id: "bob:b.test" },
    { ...good, user_id: 7 },
    { ...good, user_id: `@${"b".repeat(250)}:b.test` },
    { ...good, presence: "busy" },
    { ...good, presence: undefined },
    { ...good, last_active_ago: -1 },
    { ...good, last_active_ago: 1.5 },
    { ...good, last_active_ago: "5" },
    { ...good, currently_active: 1 },
    { ...good, status_msg: 42 },
    { ...good, status_msg: "x".repeat(1025) },
  ];
  for (const entry of bad) {
    assert.equal(parsePresencePush(entry, "b.test", NOW), null, JSON.stringify(entry));
  }
  assert.notEqual(parsePresencePush(good, "b.test", NOW), null);
});

Deno.test("presence push: the entry sent for a local user names them and carries the content", () => {
  assert.deepEqual(
    presencePush({
      userId: "@alice:a.test",
      presence: "online",
      lastActiveTs: NOW - 1000,
      statusMsg: "lunch",
    }, NOW),
    {
      user_id: "@alice:a.test",
      presence: "online",
      last_active_ago: 1000,
      currently_active: true,
      status_msg: "lunch",
    },
  );
});

Deno.test("presence content: a remote user keeps the sent currently_active until their server goes silent for 30 minutes", () => {
  const remote = {
    userId: "@bob:b.test",
    presence: "online" as const,
    lastActiveTs: NOW - 10 * 60_000,
    currentlyActive: true,
    statusMsg: "here",
    receivedTs: NOW,
  };
  // Ten minutes since the last activity: a local user would not count as currently active,
  // but Bob's server said he is.
  assert.equal(presenceContent(remote, NOW).currently_active, true);
  const later = NOW + FEDERATION_TIMEOUT_MS - 1;
  assert.equal(presenceContent(remote, later).presence, "online");
  const silent = presenceContent(remote, NOW + FEDERATION_TIMEOUT_MS);
  assert.equal(silent.presence, "offline");
  assert.equal(silent.currently_active, false);
  assert.equal(silent.status_msg, "here");
  // Timing out is a visible change; a resend of the same state is not.
  assert.equal(visiblyChanged(remote, { ...remote, receivedTs: later }, later), false);
  assert.equal(
    visiblyChanged(
      remote,
      { ...remote, receivedTs: NOW + FEDERATION_TIMEOUT_MS },
      NOW + FEDERATION_TIMEOUT_MS,
    ),
    true,
  );
});
