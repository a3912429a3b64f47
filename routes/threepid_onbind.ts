/**
 * `POST /_matrix/federation/v1/3pid/onbind`: an identity server tells us an address was bound,
 * with the third-party invites waiting for it, each signed for the new owner. Each invite is
 * exchanged for a member invite (domain/threepid/third_party_invites.ts), which checks the
 * signature against the room's m.room.third_party_invite keys and asks the identity server
 * whether the key still holds; one refused invite does not stop the others, but the answer
 * reports the last failure, as Synapse's does.
 */
import { Hono } from "hono";
import { z } from "zod";
import { MatrixError } from "../domain/errors.ts";
import type { AppDeps } from "./deps.ts";
import { readJsonBody } from "./json_body.ts";

const onbindBody = z.object({
  mxid: z.string().max(255).optional(),
  invites: z.array(
    z.object({
      sender: z.string().max(255),
      mxid: z.string().max(255),
      room_id: z.string().max(255),
      signed: z.record(z.string(), z.unknown()),
    }).passthrough(),
  ).max(100).optional(),
}).passthrough();

/** The identity servers' callback (unauthenticated, as in the spec). */
export function threepidOnbindApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.post("/_matrix/federation/v1/3pid/onbind", async (c) => {
    const body = await readJsonBody(c, onbindBody);
    let lastError: unknown;
    for (const invite of body.invites ?? []) {
      try {
        await deps.thirdPartyInvites.exchange(
          invite.sender,
          invite.mxid,
          invite.room_id,
          invite.signed,
        );
      } catch (error) {
        if (!(error instanceof MatrixError)) throw error;
        console.info("third-party invite exchange refused", invite.room_id, error.message);
        lastError = error;
      }
    }
    if (lastError !== undefined) throw lastError;
    return c.json({});
  });
  return app;
}
