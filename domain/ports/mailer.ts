/** The port for sending email (validation links); outbound/smtp_mailer.ts implements it. */

/** One plain-text message (with an optional HTML alternative). */
export interface MailMessage {
  to: string;
  subject: string;
  text: string;
  html?: string;
}

/** Sends mail; rejects when the message could not be handed to the mail server. */
export interface Mailer {
  send(message: MailMessage): Promise<void>;
}
