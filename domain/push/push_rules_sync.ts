/** The `m.push_rules` global account data in /sync: the whole ruleset whenever it changed. */
import type { SyncStreamProvider, SyncStreamRequest } from "../sync/sync_stream.ts";
import type { SyncResponse } from "../sync/sync_response.ts";
import type { PushRuleStore } from "../ports/push_rule_store.ts";
import type { PushRuleService } from "./push_rule_service.ts";
import { pushRulesContent } from "./push_rules.ts";

/**
 * A sync stream adding `m.push_rules` on a full sync, and on an incremental one when the
 * user's rules were written in the sync's window.
 */
export function pushRulesSyncStream(
  store: PushRuleStore,
  service: PushRuleService,
): SyncStreamProvider {
  return {
    name: "push_rules",
    async fill(request: SyncStreamRequest, response: SyncResponse): Promise<void> {
      if (!await store.changedBetween(request.userId, request.since, request.upTo)) return;
      const ruleset = await service.ruleset(request.userId);
      response.account_data.events.push({
        type: "m.push_rules",
        content: pushRulesContent(ruleset) as unknown as Record<string, never>,
      });
    },
  };
}
