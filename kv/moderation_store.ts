/** Account moderation and content reports on Deno KV (`userid_moderation`, `reportid_report`). */
import { moderationKeys } from "./schema.ts";
import type {
  AccountModerationRecord,
  ContentReportRecord,
  ModerationStore,
} from "../domain/ports/moderation_store.ts";

/** The ModerationStore port over one KV database. */
export class KvModerationStore implements ModerationStore {
  /** Store moderation data in `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  /** See ModerationStore.getAccountModeration. */
  async getAccountModeration(userId: string): Promise<AccountModerationRecord | null> {
    return (await this.kv.get<AccountModerationRecord>(moderationKeys.accountModeration(userId)))
      .value;
  }

  /** See ModerationStore.putAccountModeration. */
  async putAccountModeration(userId: string, record: AccountModerationRecord): Promise<void> {
    await this.kv.set(moderationKeys.accountModeration(userId), record);
  }

  /** See ModerationStore.addReport. */
  async addReport(report: ContentReportRecord): Promise<void> {
    await this.kv.set(moderationKeys.report(report.reportId), report);
  }

  /** See ModerationStore.listReports. */
  async listReports(afterId: string | undefined, limit: number): Promise<ContentReportRecord[]> {
    const prefix = moderationKeys.reportPrefix();
    const selector = afterId === undefined
      ? { prefix }
      : { prefix, start: [...moderationKeys.report(afterId), 0] as Deno.KvKey };
    const reports: ContentReportRecord[] = [];
    for await (const entry of this.kv.list<ContentReportRecord>(selector, { limit })) {
      reports.push(entry.value);
    }
    return reports;
  }
}
