/**
 * The Mailer port over SMTP with nodemailer: `TESSERA_SMTP_URL` names the server
 * (`smtp://` upgrades with STARTTLS when the server offers it, `smtps://` speaks TLS from the
 * start; credentials may sit in the URL), `TESSERA_SMTP_FROM` the sender.
 */
import type { Mailer, MailMessage } from "../domain/ports/mailer.ts";

/** What we use of a nodemailer transport. */
interface Transport {
  sendMail(message: Record<string, unknown>): Promise<unknown>;
  close(): void;
}

/** Settings of the SMTP mailer. */
export interface SmtpMailerOptions {
  /** `smtp://[user:pass@]host[:port]` or `smtps://...`. */
  url: string;
  /** The From header, e.g. `Tessera <noreply@example.org>`. */
  from: string;
  /** Give up on a connection or a reply after this long; default 10 s. */
  timeoutMs?: number;
}

/**
 * Sends each message through one pooled SMTP transport. nodemailer is loaded on the first message,
 * not at start-up: it costs about 18 MiB of memory, which a server that never mails should not pay.
 */
export class SmtpMailer implements Mailer {
  readonly #settings: Record<string, unknown>;
  readonly #from: string;
  #transport?: Promise<Transport>;

  /** Check the settings; nothing is loaded or connected until the first message. */
  constructor(options: SmtpMailerOptions) {
    const url = new URL(options.url);
    const timeout = options.timeoutMs ?? 10_000;
    this.#settings = {
      host: url.hostname.replace(/^\[|\]$/g, ""),
      port: url.port === "" ? (url.protocol === "smtps:" ? 465 : 25) : Number(url.port),
      secure: url.protocol === "smtps:",
      auth: url.username === ""
        ? undefined
        : { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) },
      connectionTimeout: timeout,
      greetingTimeout: timeout,
      socketTimeout: timeout,
    };
    this.#from = options.from;
  }

  #open(): Promise<Transport> {
    this.#transport ??= import("nodemailer").then(({ default: nodemailer }) =>
      nodemailer.createTransport(this.#settings) as Transport
    );
    return this.#transport;
  }

  /** See Mailer.send. */
  async send(message: MailMessage): Promise<void> {
    const transport = await this.#open();
    await transport.sendMail({
      from: this.#from,
      to: message.to,
      subject: message.subject,
      text: message.text,
      ...(message.html !== undefined ? { html: message.html } : {}),
    });
  }

  /** Close pooled connections (tests, shutdown). */
  close(): void {
    void this.#transport?.then((transport) => transport.close(), () => {});
  }
}
