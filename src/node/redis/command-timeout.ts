import type { Cluster, Command, Redis } from "ioredis";

/*
 * A command with no reply after the timeout is rejected ("Command timed out"), as ioredis's
 * commandTimeout does, but only once this process has read what its sockets hold.
 *
 * ioredis rejects the command when its timer fires, and Node runs the expired timers of a
 * turn of its event loop before it reads the sockets (the poll phase). A process whose loop
 * was late past the timeout (a long synchronous task, a 2-core machine under heavy load)
 * rejected commands Redis had answered in time, their replies unread in the socket: the
 * member took Redis for gone, dropped the connection and served on its local guard and
 * single-flight. Here the fired timer looks again from a setImmediate, which runs after the
 * poll phase of the same turn: a reply that came meanwhile has settled its command by then.
 * A Redis that did not answer (stalled, black-holed) is still given up on one turn of the
 * loop after the timeout.
 */

/** Commands already timed: one passes through sendCommand again (a Cluster routes it to a node). */
const timed = new WeakSet<Command>();

type Sender = (command: Command, ...rest: unknown[]) => unknown;

/**
 * Makes every command `client` sends reject with "Command timed out" when no reply came
 * within `timeoutMs` of this process listening for it (see above). Replaces ioredis's
 * `commandTimeout`, which must be unset on `client`.
 *
 * @example
 * timeCommands(new Redis(url, { commandTimeout: undefined }), 1000);
 */
export function timeCommands(client: Redis | Cluster, timeoutMs: number): void {
  const send = client.sendCommand.bind(client) as Sender;
  const timedSend: Sender = (command, ...rest) => {
    watch(command, timeoutMs);
    return send(command, ...rest);
  };
  (client as unknown as { sendCommand: Sender }).sendCommand = timedSend;
}

function watch(command: Command, timeoutMs: number): void {
  if (timed.has(command) || command.isSettled) return;
  timed.add(command);
  const timer = setTimeout(() => {
    // The timers run before this turn reads the sockets; setImmediate runs after it has.
    setImmediate(() => {
      if (!command.isSettled) command.reject(new Error("Command timed out"));
    });
  }, timeoutMs);
  const stop = () => clearTimeout(timer);
  command.promise.then(stop, stop);
}
