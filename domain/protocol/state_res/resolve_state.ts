/**
 * The entry point of state resolution: picks the algorithm the room version names and wires
 * the real auth rules unless the caller injects others.
 */
import { checkEventAuth } from "../auth_rules.ts";
import type { StateMap } from "../events.ts";
import { resolveStateV1 } from "./state_res_v1.ts";
import { resolveStateV2, stateResolutionV2Rules } from "./state_res_v2.ts";
import type { CheckAuth, StateResolutionInput } from "./resolution_input.ts";

export type { AuthDecision, CheckAuth, StateResolutionInput } from "./resolution_input.ts";

/** Resolve several room states into one with the room version's state resolution algorithm. */
export function resolveState(input: StateResolutionInput): Promise<StateMap> {
  const checkAuth: CheckAuth = input.checkAuth ?? checkEventAuth;
  switch (input.version.stateResolution) {
    case "v2":
    case "v2.1":
      return resolveStateV2(
        input,
        stateResolutionV2Rules(input.version.stateResolution),
        checkAuth,
      );
    case "v1":
      return resolveStateV1(input, checkAuth);
  }
}
