/**
 * Cross-signing reset approvals (the `m.oauth` UIA stage's record) over the KV store: single
 * use under racing requests, expiry, per user, and the stage failing without one.
 */
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import {
  CROSS_SIGNING_RESET_APPROVAL_MS,
  CrossSigningResetApprovals,
  oauthApprovalStage,
} from "../../../domain/oauth/cross_signing_reset.ts";
import { KvCrossSigningResetApprovalStore } from "../../../kv/cross_signing_reset_approval_store.ts";
import { MatrixError } from "../../../domain/errors.ts";
import type { UiaSessionRecord } from "../../../domain/ports/account_store.ts";

const ALICE = "@alice:example.org";
const BOB = "@bob:example.org";

async function withApprovals(
  fn: (approvals: CrossSigningResetApprovals, clock: { now: number }) => Promise<void>,
) {
  const kv = await Deno.openKv(":memory:");
  const clock = { now: 1_700_000_000_000 };
  try {
    const store = new KvCrossSigningResetApprovalStore(kv, () => clock.now);
    await fn(new CrossSigningResetApprovals(store, () => clock.now), clock);
  } finally {
    kv.close();
  }
}

Deno.test("cross-signing reset: an approval is used once, and only by its user", async () => {
  await withApprovals(async (approvals) => {
    assertEquals(await approvals.consume(ALICE), false);
    const approval = await approvals.approve(ALICE);
    assertEquals(approval.expiresAt - approval.approvedAt, CROSS_SIGNING_RESET_APPROVAL_MS);
    assertEquals((await approvals.pending(ALICE))?.userId, ALICE);
    assertEquals(await approvals.pending(BOB), null);
    assertEquals(await approvals.consume(BOB), false);
    assertEquals(await approvals.consume(ALICE), true);
    assertEquals(await approvals.consume(ALICE), false);
    assertEquals(await approvals.pending(ALICE), null);
  });
});

Deno.test("cross-signing reset: of racing requests exactly one takes the approval", async () => {
  await withApprovals(async (approvals) => {
    await approvals.approve(ALICE);
    const outcomes = await Promise.all(Array.from({ length: 8 }, () => approvals.consume(ALICE)));
    assertEquals(outcomes.filter((ok) => ok).length, 1);
  });
});

Deno.test("cross-signing reset: an approval past 10 minutes authorises nothing", async () => {
  await withApprovals(async (approvals, clock) => {
    await approvals.approve(ALICE);
    clock.now += CROSS_SIGNING_RESET_APPROVAL_MS - 1;
    assert(await approvals.pending(ALICE));
    clock.now += 1;
    assertEquals(await approvals.pending(ALICE), null);
    assertEquals(await approvals.consume(ALICE), false);
    // Approving again starts a new window.
    await approvals.approve(ALICE);
    assertEquals(await approvals.consume(ALICE), true);
  });
});

Deno.test("cross-signing reset: a withdrawn approval is gone", async () => {
  await withApprovals(async (approvals) => {
    await approvals.approve(ALICE);
    await approvals.withdraw(ALICE);
    assertEquals(await approvals.consume(ALICE), false);
  });
});

Deno.test("cross-signing reset: the m.oauth stage fails without an approval and names the URL", async () => {
  await withApprovals(async (approvals) => {
    const url = "https://hs.example.org/account?action=org.matrix.cross_signing_reset";
    const stage = oauthApprovalStage(approvals, ALICE, url);
    const session: UiaSessionRecord = {
      id: "s",
      action: "device_signing_upload",
      userId: ALICE,
      completed: [],
      results: {},
      expiresAt: Date.now() + 60_000,
    };
    const error = await stage({ type: "m.oauth" }, session).then(() => null, (e) => e);
    assert(error instanceof MatrixError);
    assert(error.message.includes(url));
    await approvals.approve(ALICE);
    await stage({ type: "m.oauth" }, session);
    await assertRejects(() => stage({ type: "m.oauth" }, session), /Approve the cross-signing/);
  });
});
