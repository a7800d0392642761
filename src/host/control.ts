// The control socket of a running server: a unix socket in the runtime directory on which the
// server answers one JSON request per connection with one JSON line (`layerfs stats`, the API's
// stats(); the daemon's mount requests, D36). It lives on the event loop beside the FUSE
// requests, so asking never stops service, and it is a socket, not the mount, so a client never
// enters the filesystem it asks about.
import * as fs from 'node:fs';
import * as net from 'node:net';

/** The reply to one request (or a promise of it: a mount request takes a while). */
export type ControlHandler = (request: unknown) => unknown;

export interface ControlServer {
  close(): Promise<void>;
}

/** Listen on `path` (a stale socket left by a crashed server is replaced). */
export function listenControl(path: string, handle: ControlHandler): Promise<ControlServer> {
  fs.rmSync(path, { force: true });
  const open = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    open.add(sock);
    sock.on('close', () => open.delete(sock));
    let buf = '';
    let taken = false; // one request per connection: whatever follows it is not read
    sock.setEncoding('utf8');
    sock.on('error', () => undefined); // a client that went away
    sock.on('data', (chunk: string) => {
      if (taken) return;
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        if (buf.length > 64 * 1024) sock.destroy();
        return;
      }
      const line = buf.slice(0, nl);
      taken = true;
      void (async () => {
        let reply: unknown;
        try {
          reply = await handle(JSON.parse(line));
        } catch (e) {
          reply = { error: (e as Error).message };
        }
        if (!sock.destroyed) sock.end(`${JSON.stringify(reply)}\n`);
      })();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      server.unref(); // never what keeps a server process alive
      resolve({
        close: () =>
          new Promise<void>((r) => {
            server.close(() => r());
            for (const s of open) s.destroy(); // a client that never asks must not hold the server
            fs.rmSync(path, { force: true });
          }),
      });
    });
  });
}

/** Thrown when nothing answers on the socket (no such server, or it is gone). */
export class ControlUnavailable extends Error {
  constructor(readonly code: string, path: string) {
    super(`nothing answers on ${path} (${code})`);
  }
}

/** Send one request and return the parsed reply. */
export function requestControl(path: string, request: unknown, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(path);
    let buf = '';
    sock.setEncoding('utf8');
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ControlUnavailable('ETIMEDOUT', path));
    }, timeoutMs);
    sock.on('connect', () => sock.write(`${JSON.stringify(request)}\n`));
    sock.on('data', (chunk: string) => (buf += chunk));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new ControlUnavailable(e.code ?? 'EIO', path));
    });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf));
      } catch {
        reject(new ControlUnavailable('EPROTO', path));
      }
    });
  });
}
