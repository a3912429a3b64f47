/**
 * Reporting content (`/rooms/{roomId}/report`, `/rooms/{roomId}/report/{eventId}`,
 * `/users/{userId}/report`): reports are kept in KV for the server's administrators, who read
 * them with `deno task reports`.
 */
import { MatrixError } from "../errors.ts";
import { parseRoomId, parseUserId } from "../protocol/identifiers.ts";
import type { EventReader } from "../ports/event_store.ts";
import type { ContentReportRecord, ModerationStore } from "../ports/moderation_store.ts";

/** The longest reason kept; longer ones are refused rather than cut. */
export const MAX_REPORT_REASON_LENGTH = 2000;

/** What a report carries besides its target. */
export interface ReportDetails {
  reason?: string;
  score?: number;
}

/** Files reports after the spec's checks. */
export class ContentReports {
  private readonly now: () => number;

  /** Build over the moderation store and the room event reader. */
  constructor(
    private readonly store: ModerationStore,
    private readonly events: Pick<EventReader, "getEvent" | "roomHead" | "currentStateEventId">,
    now?: () => number,
  ) {
    this.now = now ?? Date.now;
  }

  /** Report a room; 404 when this server does not know it. The reporter need not be a member. */
  async reportRoom(reporter: string, roomId: string, details: ReportDetails): Promise<void> {
    if (!parseRoomId(roomId).ok) throw new MatrixError("M_INVALID_PARAM", 400, "Invalid room ID");
    checkDetails(details);
    if ((await this.events.roomHead(roomId)) === null) throw roomNotFound();
    await this.file({ kind: "room", reporter, roomId, ...details });
  }

  /**
   * Report an event; the reporter must be joined to its room. Unknown events, events of other
   * rooms, and rooms the reporter is not in all answer the same 404, so a report
   * reveals nothing a member could not see.
   */
  async reportEvent(
    reporter: string,
    roomId: string,
    eventId: string,
    details: ReportDetails,
  ): Promise<void> {
    checkDetails(details);
    if (
      details.score !== undefined &&
      (!Number.isInteger(details.score) || details.score < -100 || details.score > 0)
    ) {
      throw new MatrixError("M_INVALID_PARAM", 400, "score must be an integer from -100 to 0");
    }
    const memberEventId = await this.events.currentStateEventId(roomId, "m.room.member", reporter);
    const member = memberEventId === null ? null : await this.events.getEvent(memberEventId);
    const event = await this.events.getEvent(eventId);
    if (
      member?.pdu.content.membership !== "join" || event === null || event.roomId !== roomId ||
      event.status === "rejected"
    ) {
      throw new MatrixError("M_NOT_FOUND", 404, "Event not found or you are not in its room");
    }
    await this.file({ kind: "event", reporter, roomId, eventId, ...details });
  }

  /**
   * Report a user. Any valid user ID is accepted and answered alike, known or not, as the spec
   * allows, so reports cannot be used to learn which users exist.
   */
  async reportUser(reporter: string, userId: string, details: ReportDetails): Promise<void> {
    if (!parseUserId(userId).ok) throw new MatrixError("M_INVALID_PARAM", 400, "Invalid user ID");
    checkDetails(details);
    await this.file({ kind: "user", reporter, userId, ...details });
  }

  /** Reports for administrators, oldest first. */
  list(afterId: string | undefined, limit: number): Promise<ContentReportRecord[]> {
    return this.store.listReports(afterId, limit);
  }

  private async file(
    report: Omit<ContentReportRecord, "reportId" | "receivedAt" | "reason"> & { reason?: string },
  ): Promise<void> {
    const receivedAt = this.now();
    const suffix = crypto.getRandomValues(new Uint8Array(6));
    const reportId = `${String(receivedAt).padStart(15, "0")}-${
      Array.from(suffix, (b) => b.toString(16).padStart(2, "0")).join("")
    }`;
    await this.store.addReport({ ...report, reason: report.reason ?? "", reportId, receivedAt });
  }
}

function checkDetails(details: ReportDetails): void {
  if (details.reason !== undefined && details.reason.length > MAX_REPORT_REASON_LENGTH) {
    throw new MatrixError(
      "M_TOO_LARGE",
      413,
      `reason is longer than ${MAX_REPORT_REASON_LENGTH} characters`,
    );
  }
}

function roomNotFound(): MatrixError {
  return new MatrixError("M_NOT_FOUND", 404, "Room not found");
}
