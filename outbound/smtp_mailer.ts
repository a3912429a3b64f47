/**
 * The Mailer port over SMTP with nodemailer: `TESSERA_SMTP_URL` names the server
 * (`smtp://` upgrades with STARTTLS when the server offers it, `smtps://` speaks TLS from the
 * start; credentials may sit in the URL), `TESSERA_SMTP_FROM` the sender.
 */
import nodemailer from "nodemailer";
import type { Mailer, MailMessage } from "../domain/ports/mailer.ts";

/** Settings of the SMTP mailer. */
export interface SmtpMailerOptions {
  /** `smtp://[user:pass@]host[:port]` or `smtps://...`. */
  url: string;
  /** The From header, e.g. `Tessera <noreply@example.org>`. */
  from: string;
  /** Give up on a connection or a reply after this long; default 10 s. */
  timeoutMs?: number;
}

/** Sends each message through one pooled SMTP transport. */
export class SmtpMailer implements Mailer {
  readonly #transport: ReturnType<typeof nodemailer.createTransport>;
  readonly #from: string;

  /** Build the transport; nothing connects until the first message. */
  constructor(options: SmtpMailerOptions) {
    const url = new URL(options.url);
    const timeout = options.timeoutMs ?? 10_000;
    this.#transport = nodemailer.createTransport({
      host: url.hostname.replace(/^\[|\]$/g, ""),
      port: url.port === "" ? (url.protocol === "smtps:" ? 465 : 25) : Number(url.port),
      secure: url.protocol === "smtps:",
      auth: url.username === ""
        ? undefined
        : { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) },
      connectionTimeout: timeout,
      greetingTimeout: timeout,
      socketTimeout: timeout,
    });
    this.#from = options.from;
  }

  /** See Mailer.send. */
  async send(message: MailMessage): Promise<void> {
    await this.#transport.sendMail({
      from: this.#from,
      to: message.to,
      subject: message.subject,
      text: message.text,
      ...(message.html !== undefined ? { html: message.html } : {}),
    });
  }

  /** Close pooled connections (tests, shutdown). */
  close(): void {
    this.#transport.close();
  }
}
