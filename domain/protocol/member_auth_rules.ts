/**
 * Auth rules for m.room.member events: join (join rules, bans, restricted joins), invite
 * (including third-party invites), leave and kick, ban and knock, per room version flags.
 */
import {
  ALLOWED,
  type AuthContext,
  type AuthDecision,
  deny,
  formatLevel,
  joinRuleOf,
  membershipOf,
  quote,
  serverNameOf,
} from "./auth_context.ts";
import { firstJoinUser } from "./create_auth_rules.ts";
import { userPowerLevel } from "./power_levels.ts";
import { checkThirdPartyInvite } from "./third_party_invite_auth.ts";

/** Rule "type is m.room.member": decides the event completely. */
export function checkMemberEvent(ctx: AuthContext): AuthDecision {
  const { event, version } = ctx;
  const target = event.state_key;
  if (target === undefined) return deny("m.room.member event has no state_key");
  const content = event.content;
  if (!Object.hasOwn(content, "membership")) return deny("m.room.member event has no membership");
  if (version.restrictedJoinRule && Object.hasOwn(content, "join_authorised_via_users_server")) {
    const via = content.join_authorised_via_users_server;
    if (typeof via !== "string") return deny("join_authorised_via_users_server is not a user ID");
    const isSignedBy = ctx.options.isSignedBy;
    if (isSignedBy !== undefined && !isSignedBy(event, serverNameOf(via))) {
      return deny("event is not signed by the authorising user's server");
    }
  }
  switch (content.membership) {
    case "join":
      return checkJoin(ctx, target);
    case "invite":
      return checkInvite(ctx, target);
    case "leave":
      return checkLeave(ctx, target);
    case "ban":
      return checkBan(ctx, target);
    case "knock":
      if (version.knockJoinRule) return checkKnock(ctx, target);
      break;
  }
  return deny(`unknown membership ${quote(content.membership)}`);
}

function levelOf(ctx: AuthContext, userId: string): number {
  return userPowerLevel(userId, ctx.powerLevelsEvent, ctx.createEvent, ctx.version);
}

function checkJoin(ctx: AuthContext, target: string): AuthDecision {
  const { event, authState, version, createEvent } = ctx;
  const prev = event.prev_events;
  if (
    prev.length === 1 && prev[0] === createEvent.event_id &&
    firstJoinUser(createEvent, version) === target
  ) {
    return ALLOWED;
  }
  if (event.sender !== target) return deny("sender cannot join on behalf of another user");
  const current = membershipOf(authState, target);
  if (current === "ban") return deny("sender is banned from the room");
  const joinRule = joinRuleOf(authState);
  const invitedOrJoined = current === "invite" || current === "join";
  if (joinRule === "invite" || (version.knockJoinRule && joinRule === "knock")) {
    return invitedOrJoined ? ALLOWED : deny(`join rule ${quote(joinRule)} needs an invite`);
  }
  if (
    (version.restrictedJoinRule && joinRule === "restricted") ||
    (version.knockRestrictedJoinRule && joinRule === "knock_restricted")
  ) {
    if (invitedOrJoined) return ALLOWED;
    return checkAuthorisedJoin(ctx);
  }
  if (joinRule === "public") return ALLOWED;
  return deny(`join rule ${quote(joinRule)} does not allow joining`);
}

/** Restricted joins: a joined user able to invite must vouch through join_authorised_via_users_server. */
function checkAuthorisedJoin(ctx: AuthContext): AuthDecision {
  const via = ctx.event.content.join_authorised_via_users_server;
  if (typeof via !== "string") {
    return deny("restricted join has no join_authorised_via_users_server");
  }
  if (membershipOf(ctx.authState, via) !== "join") {
    return deny("authorising user is not joined to the room");
  }
  const level = levelOf(ctx, via);
  if (level < ctx.levels.invite) {
    return deny(
      `authorising user's power level ${formatLevel(level)} is below the invite level ${
        formatLevel(ctx.levels.invite)
      }`,
    );
  }
  return ALLOWED;
}

function checkInvite(ctx: AuthContext, target: string): AuthDecision {
  const { event, authState, levels, senderLevel } = ctx;
  if (Object.hasOwn(event.content, "third_party_invite")) {
    return checkThirdPartyInvite(ctx, target, event.content.third_party_invite);
  }
  if (membershipOf(authState, event.sender) !== "join") {
    return deny("sender is not joined to the room");
  }
  const targetMembership = membershipOf(authState, target);
  if (targetMembership === "join") return deny("target user is already joined to the room");
  if (targetMembership === "ban") return deny("target user is banned from the room");
  if (senderLevel < levels.invite) {
    return deny(
      `sender's power level ${formatLevel(senderLevel)} is below the invite level ${
        formatLevel(levels.invite)
      }`,
    );
  }
  return ALLOWED;
}

function checkLeave(ctx: AuthContext, target: string): AuthDecision {
  const { event, authState, version, levels, senderLevel } = ctx;
  const senderMembership = membershipOf(authState, event.sender);
  if (event.sender === target) {
    if (
      senderMembership === "join" || senderMembership === "invite" ||
      (version.knockJoinRule && senderMembership === "knock")
    ) {
      return ALLOWED;
    }
    return deny(`sender cannot leave with membership ${quote(senderMembership ?? "none")}`);
  }
  if (senderMembership !== "join") return deny("sender is not joined to the room");
  if (membershipOf(authState, target) === "ban" && senderLevel < levels.ban) {
    return deny(
      `sender's power level ${formatLevel(senderLevel)} is below the ban level ${
        formatLevel(levels.ban)
      } needed to unban`,
    );
  }
  if (senderLevel < levels.kick) {
    return deny(
      `sender's power level ${formatLevel(senderLevel)} is below the kick level ${
        formatLevel(levels.kick)
      }`,
    );
  }
  return checkTargetOutranked(ctx, target);
}

function checkBan(ctx: AuthContext, target: string): AuthDecision {
  const { event, authState, levels, senderLevel } = ctx;
  if (membershipOf(authState, event.sender) !== "join") {
    return deny("sender is not joined to the room");
  }
  if (senderLevel < levels.ban) {
    return deny(
      `sender's power level ${formatLevel(senderLevel)} is below the ban level ${
        formatLevel(levels.ban)
      }`,
    );
  }
  return checkTargetOutranked(ctx, target);
}

/** Kicks and bans need the target strictly below the sender (so v12 creators are untouchable). */
function checkTargetOutranked(ctx: AuthContext, target: string): AuthDecision {
  const targetLevel = levelOf(ctx, target);
  if (targetLevel >= ctx.senderLevel) {
    return deny(
      `target user's power level ${formatLevel(targetLevel)} is not below the sender's ${
        formatLevel(ctx.senderLevel)
      }`,
    );
  }
  return ALLOWED;
}

function checkKnock(ctx: AuthContext, target: string): AuthDecision {
  const { event, authState, version } = ctx;
  const joinRule = joinRuleOf(authState);
  if (
    joinRule !== "knock" && !(version.knockRestrictedJoinRule && joinRule === "knock_restricted")
  ) {
    return deny(`join rule ${quote(joinRule)} does not allow knocking`);
  }
  if (event.sender !== target) return deny("sender cannot knock on behalf of another user");
  const current = membershipOf(authState, target);
  if (current === "ban" || current === "invite" || current === "join") {
    return deny(`sender cannot knock with membership ${quote(current)}`);
  }
  return ALLOWED;
}
