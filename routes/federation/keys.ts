/**
 * The key API (`/_matrix/key/v2/*`), unauthenticated by design: a server that does not know
 * our key yet must be able to fetch it.
 * - `GET /server`: our signed key document, with our retired keys in `old_verify_keys`;
 * - `GET /query/{serverName}` (and the deprecated `/query/{serverName}/{keyId}`) and
 *   `POST /query`: the notary, answering with other servers' documents countersigned by us.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import type { AppDeps } from "../deps.ts";
import { invalidParam, tooLarge } from "../../domain/errors.ts";
import { parseServerName, requireValid } from "../../domain/protocol/identifiers.ts";
import { signedServerKeys } from "../../domain/protocol/server_keys.ts";
import {
  MAX_NOTARY_KEY_IDS,
  MAX_NOTARY_SERVERS,
  type NotaryCriteria,
} from "../../domain/federation/key_notary.ts";
import { readJsonBody, readQuery } from "../json_body.ts";
import { pathParam } from "../client/path_params.ts";
import { rateLimited } from "../client/rate_limit_middleware.ts";

const timestamp = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

const querySchema = z.object({
  minimum_valid_until_ts: z.string().regex(/^\d{1,16}$/, "expected a timestamp in ms")
    .transform(Number).optional(),
});

const bodySchema = z.object({
  server_keys: z.record(
    z.string(),
    z.record(
      z.string(),
      z.object({ minimum_valid_until_ts: timestamp.optional() }).passthrough(),
    ),
  ),
});

/** Sub-app serving our key document and the notary endpoints. */
export function keysApp(deps: AppDeps): Hono {
  const app = new Hono();
  const serveOwnKeys = async () =>
    Response.json(await signedServerKeys(deps.keyring, deps.now?.() ?? Date.now()));
  app.get("/_matrix/key/v2/server", serveOwnKeys);
  // Removed from the spec in v1.1, still asked for by old servers; the key ID never mattered,
  // but it is still bounded like every path parameter.
  app.get("/_matrix/key/v2/server/:keyId", (c) => {
    pathParam(c, "keyId");
    return serveOwnKeys();
  });

  const queryOne = (withKeyId: boolean) => async (c: Context) => {
    const serverName = serverNameParam(pathParam(c, "serverName"));
    const { minimum_valid_until_ts } = readQuery(c, querySchema);
    const criteria: NotaryCriteria = withKeyId
      ? new Map([[pathParam(c, "keyId"), minimum_valid_until_ts]])
      : new Map();
    // Without a key ID the one minimum applies to all of the server's keys.
    const asked = new Map([[serverName, criteria]]);
    const serverKeys = await deps.keyNotary.query(asked, minimum_valid_until_ts);
    return c.json({ server_keys: serverKeys });
  };
  // Per client address: a query about uncached servers makes us fetch from each of them.
  const limited = rateLimited(deps, "key_query");
  app.get("/_matrix/key/v2/query/:serverName", limited, queryOne(false));
  app.get("/_matrix/key/v2/query/:serverName/:keyId", limited, queryOne(true));

  app.post("/_matrix/key/v2/query", limited, async (c) => {
    const body = await readJsonBody(c, bodySchema);
    const servers = Object.entries(body.server_keys);
    if (servers.length > MAX_NOTARY_SERVERS) {
      throw tooLarge(`At most ${MAX_NOTARY_SERVERS} servers per query`);
    }
    const asked = new Map<string, NotaryCriteria>();
    for (const [serverName, keys] of servers) {
      const keyIds = Object.entries(keys);
      if (keyIds.length > MAX_NOTARY_KEY_IDS) {
        throw tooLarge(`At most ${MAX_NOTARY_KEY_IDS} key IDs per server`);
      }
      asked.set(
        serverNameParam(serverName),
        new Map(keyIds.map(([keyId, criteria]) => [keyId, criteria.minimum_valid_until_ts])),
      );
    }
    return c.json({ server_keys: await deps.keyNotary.query(asked) });
  });
  return app;
}

function serverNameParam(value: string): string {
  if (value.length > 255) throw invalidParam("Server name is longer than 255 characters");
  requireValid(parseServerName(value));
  return value;
}
