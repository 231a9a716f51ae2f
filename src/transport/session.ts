// One ssh2 connection as a HostSession: commands, kept processes, TCP checks
// from the host, and the loopback answer that proves a new connection.
import ssh2, { type ClientChannel } from 'ssh2';
import { TransportError, type ExecResult, type HostSession, type HostStream, type TransportHop } from './types.js';

type Client = InstanceType<typeof ssh2.Client>;

export function createSession(host: string, hop: TransportHop, client: Client, live: Set<Client>): HostSession {
  return {
    host,
    exec(command, o = {}) {
      return new Promise<ExecResult>((resolve, reject) => {
        const onChannel = (err: Error | undefined, ch: ClientChannel): void => {
          if (err) {
            reject(new TransportError(`${host}: cannot open an exec channel: ${err.message}`, host, hop, 'channel'));
            return;
          }
          const out: Buffer[] = [];
          const errOut: Buffer[] = [];
          let exit: { code: number | null; signal?: string } | undefined;
          let timedOut = false;
          const timer =
            o.timeoutMs === undefined
              ? undefined
              : setTimeout(() => {
                  timedOut = true;
                  ch.close();
                  reject(
                    new TransportError(
                      `${host}: command timed out after ${o.timeoutMs} ms (the remote process may still be running)`,
                      host,
                      hop,
                      'timeout',
                    ),
                  );
                }, o.timeoutMs);
          // Both streams must be drained or 'close' never fires.
          ch.on('data', (d: Buffer) => out.push(d));
          ch.stderr.on('data', (d: Buffer) => errOut.push(d));
          ch.on('exit', (code: number | null, signal?: string) => {
            exit = { code: code ?? null, ...(signal ? { signal } : {}) };
          });
          ch.on('error', () => undefined);
          ch.on('close', () => {
            clearTimeout(timer);
            if (timedOut) return;
            if (!exit) {
              reject(new TransportError(`${host}: the session closed before the command exited (connection lost?)`, host, hop, 'exec'));
              return;
            }
            resolve({ ...exit, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(errOut).toString('utf8') });
          });
          ch.end(o.stdin ?? undefined);
        };
        try {
          client.exec(command, onChannel);
        } catch (err) {
          reject(new TransportError(`${host}: cannot run a command: ${(err as Error).message}`, host, hop, 'channel'));
        }
      });
    },
    spawn(command) {
      return new Promise<HostStream>((resolve, reject) => {
        try {
          client.exec(command, (err, ch) => {
            if (err) return reject(new TransportError(`${host}: cannot open an exec channel: ${err.message}`, host, hop, 'channel'));
            // A peer that went away half-closes the connection: ssh2 then drops what
            // is written, and a kept channel would wait forever. End it with the connection.
            const gone = (): void => void ch.destroy();
            client.once('end', gone).once('close', gone);
            ch.once('close', () => client.off('end', gone).off('close', gone));
            resolve(ch as unknown as HostStream);
          });
        } catch (err) {
          reject(new TransportError(`${host}: cannot run a command: ${(err as Error).message}`, host, hop, 'channel'));
        }
      });
    },
    connectTcp(address, port, timeoutMs) {
      // The host's sshd connects for us: the answer is what the network lets through from there.
      return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        try {
          client.forwardOut('127.0.0.1', 0, address, port, (err, stream) => {
            clearTimeout(timer);
            if (err) return resolve(false);
            stream.on('error', () => undefined);
            stream.end();
            resolve(true);
          });
        } catch {
          clearTimeout(timer);
          resolve(false);
        }
      });
    },
    answerOnLoopback(line, timeoutMs) {
      return new Promise<number | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), timeoutMs);
        // Only this session's own listener forwards to this client: nothing else arrives here.
        client.on('tcp connection', (_info, accept) => {
          const ch = accept();
          ch.on('error', () => undefined);
          ch.end(`${line}\n`);
        });
        try {
          client.forwardIn('127.0.0.1', 0, (err, port) => {
            clearTimeout(timer);
            resolve(err ? undefined : port);
          });
        } catch {
          clearTimeout(timer);
          resolve(undefined);
        }
      });
    },
    async close() {
      live.delete(client);
      await endClient(client);
    },
  };
}

// ssh2 has no public "is closed" flag; remembered so ending a dead client does not wait.
const closedClients = new WeakSet<Client>();

/** The client's connection is gone: ending it later must not wait. */
export function markClosed(client: Client): void {
  closedClients.add(client);
}

export function endClient(client: Client): Promise<void> {
  if (closedClients.has(client)) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      client.destroy();
      resolve();
    }, 2_000);
    client.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    client.end();
  });
}
