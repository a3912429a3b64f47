/**
 * Push rules: GET the ruleset (whole, per scope, per kind), and GET/PUT/DELETE one rule, its
 * `enabled` flag and `actions`. Paths are parsed whole, as Synapse does, so malformed ones answer
 * 400 (SyTest 61push/80torture.pl), never 405.
 */
import { Hono } from "hono";
import { z } from "zod";
import {
  changeRule,
  checkUserRuleId,
  deleteRule,
  findRule,
  putRule,
} from "../../domain/push/push_rule_edits.ts";
import { type PushCondition, RULE_KINDS, type RuleKind } from "../../domain/push/push_rules.ts";
import { MatrixError, unrecognized } from "../../domain/errors.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody, readQuery } from "../json_body.ts";
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

/** A parsed push rule path: everything after `/pushrules`, checked as far as it goes. */
type RulePath =
  | { level: "all" }
  | { level: "scope" }
  | { level: "kind"; kind: RuleKind }
  | { level: "rule"; kind: RuleKind; ruleId: string; attr?: "enabled" | "actions" };

/** 400 M_UNRECOGNIZED: a malformed push rule path (Synapse answers these 400, as SyTest expects). */
const badPath = (message: string) => new MatrixError("M_UNRECOGNIZED", 400, message);

/**
 * Parse the path after `/pushrules` from the raw URL, so empty segments, encoded slashes and
 * unknown scopes, kinds or attributes are told apart: `/pushrules` alone is 404 (no such
 * endpoint), every other malformed path 400.
 */
export function parseRulePath(pathname: string): RulePath {
  const at = pathname.indexOf("/pushrules");
  const rest = at < 0 ? "" : pathname.slice(at + "/pushrules".length);
  if (rest === "") throw unrecognized(404);
  let parts: string[];
  try {
    parts = rest.slice(1).split("/").map(decodeURIComponent);
  } catch {
    throw badPath("Malformed push rule path");
  }
  if (parts.length === 1 && parts[0] === "") return { level: "all" };
  if (parts[0] !== "global") throw badPath("Unknown push rule scope; only 'global' exists");
  if (parts.length === 1) {
    throw badPath("Unrecognised request: you probably wanted a trailing slash");
  }
  if (parts.length === 2 && parts[1] === "") return { level: "scope" };
  const kind = (RULE_KINDS as readonly string[]).includes(parts[1])
    ? parts[1] as RuleKind
    : undefined;
  if (kind === undefined) throw new MatrixError("M_INVALID_PARAM", 400, "Unknown push rule kind");
  if (parts.length === 2) {
    throw badPath("Unrecognised request: you probably wanted a trailing slash");
  }
  const ruleId = parts[2];
  if (parts.length === 3 && ruleId === "") return { level: "kind", kind };
  if (ruleId === "" || ruleId.length > MAX_TEXT) {
    throw new MatrixError("M_INVALID_PARAM", 400, "Invalid rule ID");
  }
  if (parts.length === 3) return { level: "rule", kind, ruleId };
  const attr = parts[3];
  if (parts.length > 4 || (attr !== "enabled" && attr !== "actions")) {
    throw badPath("Unknown push rule attribute; 'enabled' and 'actions' exist");
  }
  return { level: "rule", kind, ruleId, attr };
}

/** The push rules area. */
export function pushRuleArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);
  const limited = rateLimited(deps, "push_rules");
  const rules = deps.pushRules;
  const me = (c: Context<ClientEnv>) => c.get("session").userId;
  const pathOf = (c: Context) => parseRulePath(new URL(c.req.url).pathname);

  const get = async (c: Context<ClientEnv>) => {
    const path = pathOf(c);
    if (path.level === "all") return c.json({ global: await rules.ruleset(me(c)) });
    if (path.level === "scope") return c.json(await rules.ruleset(me(c)));
    if (path.level === "kind") return c.json((await rules.ruleset(me(c)))[path.kind]);
    const rule = findRule(me(c), await rules.userRules(me(c)), path.kind, path.ruleId);
    if (path.attr === "enabled") return c.json({ enabled: rule.enabled });
    if (path.attr === "actions") return c.json({ actions: rule.actions });
    return c.json(rule);
  };

  const put = async (c: Context<ClientEnv>) => {
    const path = pathOf(c);
    if (path.level !== "rule") {
      throw badPath("PUT needs a rule path: /pushrules/global/{kind}/{ruleId}");
    }
    const { kind, ruleId } = path;
    if (path.attr === "enabled") {
      const { enabled } = await readJsonBody(c, z.object({ enabled: z.boolean() }));
      await rules.edit(me(c), (current) => changeRule(me(c), current, kind, ruleId, { enabled }));
    } else if (path.attr === "actions") {
      const body = await readJsonBody(c, z.object({ actions }));
      await rules.edit(
        me(c),
        (current) => changeRule(me(c), current, kind, ruleId, { actions: body.actions }),
      );
    } else {
      checkUserRuleId(ruleId);
      const where = readQuery(c, placement);
      const body = await readJsonBody(c, ruleBody);
      if ((kind === "override" || kind === "underride") && body.conditions === undefined) {
        throw new MatrixError("M_MISSING_PARAM", 400, `${kind} rules need 'conditions'`);
      }
      await rules.edit(me(c), (current) =>
        putRule(current, kind, ruleId, {
          actions: body.actions,
          conditions: body.conditions as PushCondition[] | undefined,
          pattern: body.pattern,
        }, where));
    }
    return c.json({});
  };

  const del = async (c: Context<ClientEnv>) => {
    const path = pathOf(c);
    if (path.level !== "rule" || path.attr !== undefined) {
      throw badPath("DELETE needs a rule path: /pushrules/global/{kind}/{ruleId}");
    }
    const { kind, ruleId } = path;
    await rules.edit(me(c), (current) => deleteRule(me(c), current, kind, ruleId));
    return c.json({});
  };

  // The spec's paths are listed one by one (route tables and probes read them); the wildcard
  // catches every malformed variant so it answers 400 rather than 404 or 405.
  for (
    const route of [
      "/pushrules/",
      "/pushrules/global/",
      "/pushrules/global/:kind/",
      "/pushrules/global/:kind/:ruleId",
      "/pushrules/global/:kind/:ruleId/enabled",
      "/pushrules/global/:kind/:ruleId/actions",
    ]
  ) v3.get(route, session, get);
  for (
    const route of [
      "/pushrules/global/:kind/:ruleId",
      "/pushrules/global/:kind/:ruleId/enabled",
      "/pushrules/global/:kind/:ruleId/actions",
    ]
  ) v3.put(route, session, limited, put);
  v3.delete("/pushrules/global/:kind/:ruleId", session, limited, del);
  v3.get("/pushrules/*", session, get);
  v3.put("/pushrules/*", session, limited, put);
  v3.delete("/pushrules/*", session, limited, del);

  return { v3: v3 as unknown as Hono };
}
