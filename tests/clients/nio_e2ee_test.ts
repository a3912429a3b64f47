/**
 * An encrypted conversation between two real clients with independent crypto stacks on one server
 * process: matrix-nio with libolm (Debian's python3-matrix-nio and python3-olm, driven step by
 * step through nio_e2ee_client.py) and matrix-js-sdk with its Rust crypto, in this process.
 *
 * nio creates an encrypted room and invites the js-sdk user, who joins. nio uploads its keys,
 * queries the js-sdk device, claims one of its one-time keys, shares a megolm session with it
 * over to-device Olm and sends; the js-sdk decrypts. Then the js-sdk sends; nio receives the room
 * key over to-device Olm and decrypts the megolm event. `.ci/run` installs the Debian packages.
 */
import { assert, assertEquals } from "../assert.ts";
import { type ServerProcess, startServerProcess } from "./server_process.ts";
import { ensureDebianPackages, NIO_PACKAGES } from "./debian_packages.ts";
import { registerUser, step } from "./matrix_helpers.ts";
import {
  cryptoFailureReport,
  type CryptoSession,
  joinEncryptedRoom,
  openCryptoClient,
  sendEncryptedText,
  waitForDecryptedText,
  waitForOwnDeviceKeysUploaded,
} from "./crypto_client.ts";

const python = "/usr/bin/python3";
const script = new URL("./nio_e2ee_client.py", import.meta.url).pathname;
const PASSWORD = "nio and js-sdk share secrets";
/** How long one step of the nio script may take before the test gives up on it. */
const NIO_STEP_TIMEOUT_MS = 60_000;
/** What the nio script may spend syncing while it waits for something (it polls until then). */
const NIO_WAIT_MS = 30_000;

/** Install Debian's nio and olm when missing; fail with what went wrong if they still don't load. */
async function requireNio(): Promise<void> {
  await ensureDebianPackages(NIO_PACKAGES);
  let probe;
  try {
    probe = await new Deno.Command(python, {
      args: ["-c", "import nio, olm"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    throw new Error(
      `${python} cannot be run (${error}); install Debian's python3, python3-matrix-nio and ` +
        "python3-olm (apt-get install -y python3-matrix-nio python3-olm; .ci/run does this)",
    );
  }
  if (probe.code !== 0) {
    throw new Error(
      `matrix-nio with olm is not installed for ${python}: apt-get install -y ` +
        `python3-matrix-nio python3-olm (.ci/run does this).\n` +
        new TextDecoder().decode(probe.stderr),
    );
  }
}

/** What nio_e2ee_client.py answers to `start`. */
interface NioDevice {
  user_id: string;
  device_id: string;
  ed25519: string;
  curve25519: string;
  uploaded_one_time_keys: number;
  synced_one_time_keys: number;
}

/** A room key nio received over to-device Olm. */
interface NioRoomKey {
  sender: string;
  sender_key: string;
  room_id: string;
  session_id: string;
}

/** What nio_e2ee_client.py answers to `wait_decrypted`. */
interface NioDecrypted {
  body: string;
  sender: string;
  session_id: string;
  decrypted: boolean;
  room_keys: NioRoomKey[];
}

/**
 * The nio script as a child process: one JSON request per line on its stdin, one JSON answer per
 * line on its stdout; its stderr (a line per step) is kept for failure reports.
 */
class NioProcess {
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  private readonly stderrChunks: string[] = [];
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private readonly done: Promise<void>;
  private exited = false;

  constructor(private readonly child: Deno.ChildProcess, private readonly storeDir: string) {
    this.writer = child.stdin.getWriter();
    const readAnswers = async () => {
      let buffered = "";
      for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
        buffered += text;
        let newline;
        while ((newline = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (line.trim()) this.answer(line);
        }
      }
    };
    const readLog = async () => {
      for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.stderrChunks.push(text);
      }
    };
    this.done = Promise.all([readAnswers(), readLog(), child.status]).then(() => {
      this.exited = true;
      for (const { reject } of this.waiting.values()) {
        reject(new Error(`the nio script exited before answering:\n${this.log()}`));
      }
      this.waiting.clear();
    });
  }

  static async start(): Promise<NioProcess> {
    const storeDir = await Deno.makeTempDir({ prefix: "tessera-nio-store-" });
    const child = new Deno.Command(python, {
      args: [script],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { PYTHONDONTWRITEBYTECODE: "1", PYTHONUNBUFFERED: "1" },
    }).spawn();
    return new NioProcess(child, storeDir);
  }

  /** nio's SqliteStore lives here (a fresh temporary directory, removed by `close`). */
  get store(): string {
    return this.storeDir;
  }

  /** Everything the script printed to stderr (its step log and any traceback). */
  log(): string {
    return this.stderrChunks.join("");
  }

  private answer(line: string): void {
    let parsed: { id?: number; ok?: boolean; result?: unknown; error?: string };
    try {
      parsed = JSON.parse(line);
    } catch {
      this.stderrChunks.push(`(non-JSON line on stdout) ${line}\n`);
      return;
    }
    const waiter = this.waiting.get(parsed.id ?? -1);
    if (!waiter) return;
    this.waiting.delete(parsed.id!);
    if (parsed.ok) waiter.resolve(parsed.result);
    else waiter.reject(new Error(parsed.error ?? "no error message"));
  }

  /** Run one command of the script; reject with the script's error message if it fails. */
  async call<T>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    if (this.exited) throw new Error(`the nio script has exited:\n${this.log()}`);
    const id = this.nextId++;
    const answered = new Promise<unknown>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`nio ${cmd} gave no answer within ${NIO_STEP_TIMEOUT_MS} ms`)),
        NIO_STEP_TIMEOUT_MS,
      );
    });
    await this.writer.write(new TextEncoder().encode(JSON.stringify({ id, cmd, ...args }) + "\n"));
    try {
      return await Promise.race([answered, timedOut]) as T;
    } catch (error) {
      throw new Error(`nio ${cmd} failed: ${(error as Error).message}`, { cause: error });
    } finally {
      clearTimeout(timer);
      this.waiting.delete(id);
    }
  }

  /**
   * End the script by closing its stdin (it quits at end of input once its current step is
   * done), kill it if it is still busy after 10 s, and drop its store.
   */
  async close(): Promise<void> {
    await this.writer.close().catch(() => {});
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch { /* exited meanwhile */ }
    }, 10_000);
    await this.done;
    clearTimeout(timer);
    await Deno.remove(this.storeDir, { recursive: true }).catch(() => {});
  }
}

Deno.test({
  name: "nio (libolm) <-> js-sdk (Rust crypto): each decrypts the other's megolm message",
  fn: async () => {
    await requireNio();
    const server: ServerProcess = await startServerProcess();
    const nio = await NioProcess.start();
    let js: CryptoSession | undefined;
    let failed = true;
    try {
      const jsUser = await step(
        "register the js-sdk user",
        () => registerUser(server.baseUrl, "rusty", PASSWORD),
      );
      js = await openCryptoClient({
        baseUrl: server.baseUrl,
        user: jsUser,
        password: PASSWORD,
        deviceDisplayName: "js-sdk (Rust crypto)",
      });
      await waitForOwnDeviceKeysUploaded(js);

      const me = await nio.call<NioDevice>("start", {
        homeserver: server.baseUrl,
        server_name: server.serverName,
        localpart: "olmy",
        password: PASSWORD,
        store_dir: nio.store,
      });
      assertEquals(me.user_id, `@olmy:${server.serverName}`);
      // The count sync reports is the count the upload answered: nobody has claimed any yet.
      assert(me.uploaded_one_time_keys > 0, `nio uploaded no one-time keys: ${JSON.stringify(me)}`);
      assertEquals(
        me.synced_one_time_keys,
        me.uploaded_one_time_keys,
        "device_one_time_keys_count.signed_curve25519 in nio's first sync",
      );

      const { room_id: roomId } = await nio.call<{ room_id: string }>(
        "create_encrypted_room",
        { invite: [js.userId], timeout_ms: NIO_WAIT_MS },
      );
      await joinEncryptedRoom(js, roomId);
      await nio.call("wait_joined", {
        room_id: roomId,
        user_id: js.userId,
        timeout_ms: NIO_WAIT_MS,
      });

      // nio -> js-sdk: nio's Olm session to the js-sdk device carries the megolm key.
      const fromNio = "a secret from matrix-nio";
      const sentByNio = await nio.call<{ event_id: string; session_id: string }>(
        "send_encrypted",
        { room_id: roomId, body: fromNio, to_user: js.userId, to_device: js.deviceId },
      );
      const seenByJs = await waitForDecryptedText(js, roomId, fromNio, sentByNio.event_id);
      assertEquals(seenByJs.sender, me.user_id);
      assertEquals(seenByJs.wireType, "m.room.encrypted");
      assertEquals(seenByJs.senderCurve25519, me.curve25519, "the megolm session's sender key");

      // js-sdk -> nio: the Rust crypto queries nio's device, claims its one-time key and sends
      // the room key over to-device Olm before the event; nio decrypts the megolm event with it.
      const fromJs = "a secret from the Rust crypto";
      const sentByJs = await sendEncryptedText(js, roomId, fromJs);
      const seenByNio = await nio.call<NioDecrypted>("wait_decrypted", {
        room_id: roomId,
        event_id: sentByJs,
        timeout_ms: NIO_WAIT_MS,
      });
      assertEquals(seenByNio.body, fromJs);
      assertEquals(seenByNio.sender, js.userId);
      assert(seenByNio.decrypted, "nio did not mark the event as decrypted");
      const ownKeys = await js.crypto.getOwnDeviceKeys();
      const roomKey = seenByNio.room_keys.find((k) => k.session_id === seenByNio.session_id);
      assert(
        roomKey,
        `nio decrypted with session ${seenByNio.session_id}, but got no such room key over ` +
          `to-device: ${JSON.stringify(seenByNio.room_keys)}`,
      );
      assertEquals(roomKey.sender, js.userId);
      assertEquals(roomKey.room_id, roomId);
      assertEquals(roomKey.sender_key, ownKeys.curve25519, "the room key's Olm sender key");
      failed = false;
    } finally {
      js?.stop();
      await nio.close();
      await server.stop();
      if (failed) {
        console.error(`nio script log:\n${nio.log()}`);
        if (js) console.error(cryptoFailureReport([js]));
        console.error(`server output:\n${server.output()}`);
      }
    }
  },
});
