// A static file server for the e2e tests: serves the `wasm/` directory (the demo and
// the package wasm-pack built in `pkg/`) on 127.0.0.1, on a free port; with `sync`, it
// also forwards `/sync/*` to that sync server (same origin for the page), and can lose
// or hold the answers of pushes to test what a client does then.
import { createServer, request as forward } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".ts": "text/plain; charset=utf-8",
};

/** Starts the server; resolves to `{ origin, close, proxy }`. `proxy.losePushAnswers`
 * counts pushes whose answer is dropped after the server answered (the connection is
 * cut); `proxy.holdPushMs` delays each push before it is forwarded; `proxy.pushes` counts
 * the pushes forwarded, `proxy.pullsAfter` lists the `after` of each pull. */
export async function serve({ sync } = {}) {
  const proxy = { losePushAnswers: 0, holdPushMs: 0, pushes: 0, lost: 0, pullsAfter: [] };
  const server = createServer(async (request, response) => {
    const path = decodeURIComponent(new URL(request.url, "http://x").pathname);
    if (sync && path.startsWith("/sync/")) {
      await relay(request, response, sync, proxy);
      return;
    }
    const file = normalize(join(ROOT, path.endsWith("/") ? `${path}index.html` : path));
    if (!file.startsWith(ROOT.endsWith(sep) ? ROOT : ROOT + sep)) {
      response.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      response.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
      response.end(body);
    } catch {
      response.writeHead(404).end(`not found: ${path}`);
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    proxy,
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(resolve);
    }),
  };
}

/** Forwards a request to the sync server at `target` (`http://host:port`). */
async function relay(request, response, target, proxy) {
  const push = request.url.startsWith("/sync/push");
  if (request.url.startsWith("/sync/pull")) {
    proxy.pullsAfter.push(Number(new URL(request.url, "http://x").searchParams.get("after")));
  }
  if (push) {
    proxy.pushes += 1;
    if (proxy.holdPushMs > 0) await new Promise((resolve) => setTimeout(resolve, proxy.holdPushMs));
  }
  const url = new URL(request.url.slice("/sync".length), target);
  const outgoing = forward(url, { method: request.method, headers: request.headers }, (answer) => {
    if (push && proxy.losePushAnswers > 0) {
      // The server committed and answered; the client never hears it.
      proxy.losePushAnswers -= 1;
      proxy.lost += 1;
      answer.resume();
      answer.on("end", () => request.socket.destroy());
      return;
    }
    response.writeHead(answer.statusCode, answer.headers);
    answer.pipe(response);
  });
  outgoing.on("error", () => request.socket.destroy());
  request.pipe(outgoing);
}
