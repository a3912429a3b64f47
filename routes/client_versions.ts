/** `GET /_matrix/client/versions`: which spec versions and unstable features we serve. */
import { Hono } from "hono";

/**
 * Spec versions advertised to clients. The modules a chat client needs work end to end
 * (accounts, rooms, events, sync, profiles, account data, typing, receipts, presence, push
 * rules, filters, capabilities); the README lists what is still missing. v1.13 and v1.14
 * (reporting rooms and users, M_USER_SUSPENDED, ACLs on EDUs) and v1.15 (the OAuth 2.0 API,
 * stable room summaries, rich topics) are served; with `TESSERA_OAUTH=off` auth_metadata
 * answers 404 M_UNRECOGNIZED, which is v1.15's own way of saying the OAuth API is not offered.
 * We stop at v1.15 because v1.16 switches clients to `use_state_after` sync, not served yet.
 */
export const ADVERTISED_SPEC_VERSIONS: readonly string[] = [
  "r0.0.1",
  "r0.1.0",
  "r0.2.0",
  "r0.3.0",
  "r0.4.0",
  "r0.5.0",
  "r0.6.0",
  "r0.6.1",
  "v1.1",
  "v1.2",
  "v1.3",
  "v1.4",
  "v1.5",
  "v1.6",
  "v1.7",
  "v1.8",
  "v1.9",
  "v1.10",
  "v1.11",
  "v1.12",
  "v1.13",
  "v1.14",
  "v1.15",
];

/**
 * Unstable features we actually implement: cross-signing under its pre-spec flag (older clients
 * still look for it before they offer verification), MSC3814 dehydrated devices, and the room
 * summary (MSC3266) and mutual rooms (MSC2666) under the flags Synapse gives them: they became
 * stable after the last version we advertise, so clients look for these before calling them.
 * Simplified sliding sync (MSC4186) under the flag Element X and matrix-js-sdk look for.
 */
export const UNSTABLE_FEATURES: Readonly<Record<string, boolean>> = {
  "org.matrix.e2e_cross_signing": true,
  "org.matrix.msc3814": true,
  "im.nheko.summary": true,
  "uk.half-shot.msc2666.query_mutual_rooms": true,
  "org.matrix.simplified_msc3575": true,
};

/** Sub-app serving the versions endpoint. */
export function clientVersionsApp(): Hono {
  const app = new Hono();
  app.get("/_matrix/client/versions", (c) =>
    c.json({
      versions: [...ADVERTISED_SPEC_VERSIONS],
      unstable_features: { ...UNSTABLE_FEATURES },
    }));
  return app;
}
