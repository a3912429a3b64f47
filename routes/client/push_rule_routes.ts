/** Push rules: GET the ruleset, and GET/PUT/DELETE one rule, its `enabled` flag and `actions`. */
import { Hono } from "hono";
import { z } from "zod";
import { changeRule, deleteRule, findRule, putRule } from "../../domain/push/push_rule_edits.ts";
import { type PushCondition, RULE_KINDS, type RuleKind } from "../../domain/push/push_rules.ts";
import { MatrixError } from "../../domain/errors.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody, readQuery, validate } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";
import type { Context } from "hono";

const MAX_ACTIONS = 20;
const MAX_CONDITIONS = 20;
const MAX_TEXT = 1_000;

/** Actions: the strings the spec knows (historical no-ops included) or tweak objects. */
const action = z.union([
  z.enum(["notify", "dont_notify", "coalesce"]),
  z.object({ set_tweak: z.string().min(1).max(MAX_TEXT) }).catchall(z.json()),
]);
const actions = z.array(action).max(MAX_ACTIONS);
const scalar = z.union([z.string().max(MAX_TEXT), z.number().int(), z.boolean(), z.null()]);
const condition = z.object({
  kind: z.string().min(1).max(MAX_TEXT),
  key: z.string().max(MAX_TEXT).optional(),
  pattern: z.string().max(MAX_TEXT).optional(),
  is: z.string().max(MAX_TEXT).optional(),
  value: scalar.optional(),
}).catchall(z.json());
const ruleBody = z.object({
  actions,
  conditions: z.array(condition).max(MAX_CONDITIONS).optional(),
  pattern: z.string().max(MAX_TEXT).optional(),
});
const placement = z.object({
  before: z.string().max(MAX_TEXT).optional(),
  after: z.string().max(MAX_TEXT).optional(),
});
const kindParam = z.enum(RULE_KINDS);

/** The push rules area. */
export function pushRuleArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);
  const limited = rateLimited(deps, "push_rules");
  const rules = deps.pushRules;
  const me = (c: Context<ClientEnv>) => c.get("session").userId;

  const whole = async (c: Context<ClientEnv>) => c.json({ global: await rules.ruleset(me(c)) });
  v3.get("/pushrules/", session, whole);
  v3.get("/pushrules", session, whole);
  const global = async (c: Context<ClientEnv>) => c.json(await rules.ruleset(me(c)));
  v3.get("/pushrules/global/", session, global);
  v3.get("/pushrules/global", session, global);

  v3.get("/pushrules/global/:kind/:ruleId", session, async (c) => {
    const [kind, ruleId] = ruleParams(c);
    return c.json(findRule(me(c), await rules.userRules(me(c)), kind, ruleId));
  });

  v3.put("/pushrules/global/:kind/:ruleId", session, limited, async (c) => {
    const [kind, ruleId] = ruleParams(c);
    const where = readQuery(c, placement);
    const body = await readJsonBody(c, ruleBody);
    await rules.edit(me(c), (current) =>
      putRule(current, kind, ruleId, {
        actions: body.actions,
        conditions: body.conditions as PushCondition[] | undefined,
        pattern: body.pattern,
      }, where));
    return c.json({});
  });

  v3.delete("/pushrules/global/:kind/:ruleId", session, limited, async (c) => {
    const [kind, ruleId] = ruleParams(c);
    await rules.edit(me(c), (current) => deleteRule(me(c), current, kind, ruleId));
    return c.json({});
  });

  v3.get("/pushrules/global/:kind/:ruleId/enabled", session, async (c) => {
    const [kind, ruleId] = ruleParams(c);
    const rule = findRule(me(c), await rules.userRules(me(c)), kind, ruleId);
    return c.json({ enabled: rule.enabled });
  });

  v3.put("/pushrules/global/:kind/:ruleId/enabled", session, limited, async (c) => {
    const [kind, ruleId] = ruleParams(c);
    const { enabled } = await readJsonBody(c, z.object({ enabled: z.boolean() }));
    await rules.edit(me(c), (current) => changeRule(me(c), current, kind, ruleId, { enabled }));
    return c.json({});
  });

  v3.get("/pushrules/global/:kind/:ruleId/actions", session, async (c) => {
    const [kind, ruleId] = ruleParams(c);
    const rule = findRule(me(c), await rules.userRules(me(c)), kind, ruleId);
    return c.json({ actions: rule.actions });
  });

  v3.put("/pushrules/global/:kind/:ruleId/actions", session, limited, async (c) => {
    const [kind, ruleId] = ruleParams(c);
    const body = await readJsonBody(c, z.object({ actions }));
    await rules.edit(
      me(c),
      (current) => changeRule(me(c), current, kind, ruleId, { actions: body.actions }),
    );
    return c.json({});
  });

  return { v3: v3 as unknown as Hono };
}

/** The kind and rule ID of a rule path, the kind checked against the spec's five. */
function ruleParams(c: Context): [RuleKind, string] {
  const kind = validate(kindParam, c.req.param("kind"), "path parameter 'kind'", "M_INVALID_PARAM");
  const ruleId = c.req.param("ruleId") ?? "";
  if (ruleId === "" || ruleId.length > MAX_TEXT) {
    throw new MatrixError("M_INVALID_PARAM", 400, "Invalid rule ID");
  }
  return [kind, ruleId];
}
