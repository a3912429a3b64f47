/**
 * `PUT /_matrix/federation/v1/send/{txnId}`: another server pushes PDUs and EDUs. The caller is
 * authenticated (X-Matrix), the body bounded (50 PDUs, 100 EDUs, else 400), and the work left to
 * domain/federation/inbound_transactions.ts, which answers with a result per PDU.
 */
import { Hono } from "hono";
import { z } from "zod";
import {
  MAX_TRANSACTION_EDUS,
  MAX_TRANSACTION_PDUS,
} from "../../domain/federation/inbound_transactions.ts";
import { pathParam } from "../client/path_params.ts";
import type { AppDeps } from "../deps.ts";
import { validate } from "../json_body.ts";
import { originOf, serverAuth, signedContent } from "./server_auth.ts";

const transactionBody = z.object({
  origin: z.string().optional(),
  origin_server_ts: z.number().optional(),
  pdus: z.array(z.unknown()).max(MAX_TRANSACTION_PDUS),
  edus: z.array(z.unknown()).max(MAX_TRANSACTION_EDUS).optional(),
});

/** The transaction route. */
export function federationTransactionsApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.put("/_matrix/federation/v1/send/:txnId", serverAuth(deps), async (c) => {
    const txnId = pathParam(c, "txnId");
    const body = validate(transactionBody, signedContent(c) ?? {}, "body");
    const answer = await deps.transactionReceiver.receive(originOf(c), txnId, {
      pdus: body.pdus,
      edus: body.edus ?? [],
    });
    return c.json(answer);
  });
  return app;
}
