/** `POST /user_directory/search`. */
import { Hono } from "hono";
import { z } from "zod";
import { searchUserDirectory } from "../../domain/profile/user_directory.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

const searchBody = z.object({
  search_term: z.string().max(1000),
  limit: z.number().int().min(0).max(1000).optional(),
});

/** The user directory area. */
export function userDirectoryArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  v3.post("/user_directory/search", requireSession(deps.sessions), async (c) => {
    const body = await readJsonBody(c, searchBody);
    const result = await searchUserDirectory(
      {
        events: deps.eventStore,
        profiles: deps.profiles,
        publishedRoomIds: () => deps.roomDirectory.publishedRooms(),
        serverName: deps.config.serverName,
      },
      c.get("session").userId,
      body.search_term,
      Math.min(body.limit ?? 10, 100),
    );
    return c.json(result);
  });
  return { v3: v3 as unknown as Hono };
}
