/** The `m.push_rules` global account data in /sync: the whole ruleset whenever it changed. */
import { matchesEventFilter } from "../protocol/event_filter.ts";
import type { SyncStreamProvider, SyncStreamRequest } from "../sync/sync_stream.ts";
import type { SyncResponse } from "../sync/sync_response.ts";
import type { PushRuleStore } from "../ports/push_rule_store.ts";
import type { PushRuleService } from "./push_rule_service.ts";
import { pushRulesContent } from "./push_rules.ts";

/**
 * A sync stream adding `m.push_rules` on a full sync (or `full_state`), and on an incremental
 * one when the user's rules were written in the sync's window; the filter's `account_data`
 * applies to it as to any global account data.
 */
export function pushRulesSyncStream(
  store: PushRuleStore,
  service: PushRuleService,
): SyncStreamProvider {
  return {
    name: "push_rules",
    async fill(request: SyncStreamRequest, response: SyncResponse): Promise<void> {
      const probe = { type: "m.push_rules", sender: request.userId };
      if (!matchesEventFilter(request.filter.account_data ?? {}, probe)) return;
      const since = request.fullState ? undefined : request.since;
      if (!await store.changedBetween(request.userId, since, request.upTo)) return;
      const ruleset = await service.ruleset(request.userId);
      response.account_data.events.push({
        type: "m.push_rules",
        content: pushRulesContent(ruleset) as unknown as Record<string, never>,
      });
    },
  };
}
