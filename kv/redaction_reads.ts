/** Reads of the redaction index: which accepted redactions name which events of a room. */
import { getManyChunked } from "./get_many.ts";
import type { StoreContext } from "./store_context.ts";

/** Accepted redaction IDs naming each event, in arrival order; events without any are absent. */
export async function readRedactions(
  ctx: StoreContext,
  roomId: string,
  eventIds: readonly string[],
): Promise<Map<string, string[]>> {
  const ids = [...new Set(eventIds)];
  const entries = await getManyChunked<string[]>(
    ctx.kv,
    ids.map((id) => ctx.keys.redactions(roomId, id)),
  );
  const out = new Map<string, string[]>();
  entries.forEach((entry, i) => {
    if (entry.value && entry.value.length > 0) out.set(ids[i], entry.value);
  });
  return out;
}
