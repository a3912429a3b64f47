/**
 * The body of `POST /publicRooms`, the same in the Client-Server and the Server-Server API.
 * null stands for "not given": clients paging send the last page's absent `next_batch` as null,
 * and Synapse takes it so.
 */
import { z } from "zod";

/** A public room list request's body. */
export const publicRoomsBody = z.object({
  limit: z.number().int().min(0).max(1000).nullish(),
  since: z.string().max(64).nullish(),
  filter: z.object({
    generic_search_term: z.string().max(1000).nullish(),
    room_types: z.array(z.string().max(255).nullable()).max(100).optional(),
  }).nullish(),
  include_all_networks: z.boolean().optional(),
  third_party_instance_id: z.string().max(255).optional(),
});
