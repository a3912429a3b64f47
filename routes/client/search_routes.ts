/** `POST /search`: full-text search of room events (domain/search/room_event_search.ts). */
import { Hono } from "hono";
import { z } from "zod";
import { roomEventFilterSchema } from "../../domain/protocol/event_filter.ts";
import { SEARCH_KEYS } from "../../domain/search/search_terms.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody, readQuery } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

const contextLimit = z.number().int().min(0).max(1_000_000);

/** The request body; only the `room_events` category exists. */
const searchBody = z.object({
  search_categories: z.object({
    room_events: z.object({
      search_term: z.string().max(1000),
      keys: z.array(z.enum(SEARCH_KEYS)).max(3).optional(),
      filter: roomEventFilterSchema.optional(),
      order_by: z.enum(["rank", "recent"]).optional(),
      event_context: z.object({
        before_limit: contextLimit.optional(),
        after_limit: contextLimit.optional(),
        include_profile: z.boolean().optional(),
      }).optional(),
      include_state: z.boolean().optional(),
      groupings: z.object({
        group_by: z.array(z.object({ key: z.enum(["room_id", "sender"]) })).max(2).optional(),
      }).optional(),
    }).optional(),
  }),
});

const searchQuery = z.object({ next_batch: z.string().max(1024).optional() });

/** The search area. */
export function searchArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  // A search reads up to about 100,000 index entries: the most a request of ours reads, so it is
  // the one read that is rate-limited.
  v3.post("/search", requireSession(deps.sessions), rateLimited(deps, "search"), async (c) => {
    const query = readQuery(c, searchQuery);
    const body = await readJsonBody(c, searchBody);
    const criteria = body.search_categories.room_events;
    // No category asked for: nothing to search (Synapse answers the same).
    if (!criteria) return c.json({ search_categories: {} });
    const session = c.get("session");
    const context = criteria.event_context;
    const roomEvents = await deps.search.search(
      { userId: session.userId, deviceId: session.deviceId },
      {
        searchTerm: criteria.search_term,
        keys: criteria.keys,
        filter: criteria.filter ?? {},
        orderBy: criteria.order_by ?? "rank",
        eventContext: context && {
          beforeLimit: context.before_limit ?? 5,
          afterLimit: context.after_limit ?? 5,
          includeProfile: context.include_profile ?? false,
        },
        includeState: criteria.include_state ?? false,
        groupBy: criteria.groupings?.group_by?.map((g) => g.key) ?? [],
      },
      query.next_batch,
    );
    return c.json({ search_categories: { room_events: roomEvents } });
  });
  return { v3: v3 as unknown as Hono };
}
