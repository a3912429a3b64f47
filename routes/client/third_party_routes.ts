/**
 * Third-party networks (`/thirdparty/*`). Bridges provide protocols through application
 * services, which Tessera does not support yet, so there are no protocols: the lists are empty
 * and a named protocol is unknown (404), as the spec answers for a protocol nobody provides.
 */
import { Hono } from "hono";
import { MatrixError, missingParam } from "../../domain/errors.ts";
import type { AppDeps } from "../deps.ts";
import type { ClientArea } from "./client_api.ts";
import { pathParam } from "./path_params.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

/** The third-party networks area. */
export function thirdPartyArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);
  const unknownProtocol = (protocol: string) =>
    new MatrixError("M_NOT_FOUND", 404, `No bridge provides the protocol '${protocol}'`);

  v3.get("/thirdparty/protocols", session, (c) => c.json({}));
  v3.get("/thirdparty/protocol/:protocol", session, (c) => {
    throw unknownProtocol(pathParam(c, "protocol"));
  });
  v3.get("/thirdparty/location/:protocol", session, (c) => {
    throw unknownProtocol(pathParam(c, "protocol"));
  });
  v3.get("/thirdparty/user/:protocol", session, (c) => {
    throw unknownProtocol(pathParam(c, "protocol"));
  });
  // Reverse lookups by alias or user ID: no bridge knows any portal or ghost user.
  v3.get("/thirdparty/location", session, (c) => {
    if (!c.req.query("alias")) throw missingParam("Missing the 'alias' query parameter");
    return c.json([]);
  });
  v3.get("/thirdparty/user", session, (c) => {
    if (!c.req.query("userid")) throw missingParam("Missing the 'userid' query parameter");
    return c.json([]);
  });

  return { v3: v3 as unknown as Hono };
}
