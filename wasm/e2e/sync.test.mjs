// End-to-end sync: a real `eventkv serve` on a temporary SQLite file, two browser
// contexts (two devices) in headless Chromium, offline and online, conflicts, lost
// answers, closed tabs, and a large initial sync. Needs the package (`wasm-pack build`)
// and the `eventkv` binary (`cargo build -p eventkv-cli`; EVENTKV_BIN names another).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const BIN = process.env.EVENTKV_BIN ?? fileURLToPath(new URL("../../target/debug/eventkv", import.meta.url));

let dir;
let sync; // { child, base }
let site; // the static server, forwarding /sync/ to the sync server
let browser;

/** Starts `eventkv serve` on a SQLite file; resolves once it listens. */
async function startServer(store) {
  const child = spawn(BIN, ["serve", store, "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk) => { stderr += chunk; });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`eventkv serve exited with ${code}: ${stderr}`)));
  });
  const base = line.replace(/^listening on /, "");
  assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/, line);
  return { child, base };
}

before(async () => {
  assert.ok(existsSync(new URL("../pkg/eventkv_wasm.js", import.meta.url)), "wasm/pkg is missing: run `wasm-pack build --target web --mode no-install` in wasm/ first");
  assert.ok(existsSync(BIN), `${BIN} is missing: run \`cargo build -p eventkv-cli\` first (or set EVENTKV_BIN)`);
  dir = mkdtempSync(join(tmpdir(), "eventkv-sync-e2e-"));
  sync = await startServer(`sqlite:${join(dir, "server.sqlite")}`);
  site = await serve({ sync: sync.base });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await site?.close();
  sync?.child.kill("SIGTERM"); // by the PID this test started
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let unique = 0;
/** A name of this run's own (aggregate ids, database names). */
const fresh = (what) => `${what}-${process.pid}-${++unique}`;

/** The server's log, through its own HTTP API. */
async function serverLog() {
  const events = [];
  let after = 0;
  for (;;) {
    const answer = await fetch(`${sync.base}/pull?protocol=1&after=${after}&limit=4096`);
    assert.equal(answer.status, 200);
    const page = await answer.json();
    events.push(...page.events);
    after = page.cursor;
    if (!page.more) return events;
  }
}

/** A device: a browser context with a page of the package; `open` opens a synced store. */
async function device() {
  const context = await browser.newContext();
  const page = await openPage(context);
  return { context, page };
}

async function openPage(context) {
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error("page error:", error));
  await page.goto(`${site.origin}/e2e/sync.html`);
  await page.waitForFunction(() => document.body.dataset.ready === "true");
  return page;
}

/** Opens the synced store `db` in `page` as `window.store` (rebase: "none" parks). */
async function openStore(page, db, { rebase = "none" } = {}) {
  await page.evaluate(async ({ db, url, rebase }) => {
    const options = { url };
    if (rebase === "append-again") {
      // Re-run the command: the same deposits, made on the server's version.
      options.rebase = (conflict) => {
        window.conflicts = (window.conflicts ?? 0) + 1;
        return conflict.pending.map((event) => ({ type: event.type, data: event.data }));
      };
    }
    window.store = await window.eventkv.EventStore.open(db, { sync: options });
  }, { db, url: `${site.origin}/sync`, rebase });
}

/** Waits until `predicate(arg)` holds in the page; fails with the sync status. */
async function until(page, predicate, what, { arg = null, timeout = 30000 } = {}) {
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: 50 });
  } catch (error) {
    const status = await page.evaluate(() => window.store?.sync?.status());
    throw new Error(`${what}: ${error.message}\nstatus: ${JSON.stringify(status)}`);
  }
}

/** Waits until the async `predicate(arg)`, evaluated in the page, resolves to true
 * (`waitForFunction` would take its promise for a truthy value). */
async function eventually(page, predicate, arg, what, timeout = 30000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await page.evaluate(predicate, arg)) return;
    if (Date.now() > deadline) {
      const status = await page.evaluate(() => window.store?.sync?.status());
      throw new Error(`${what}: not within ${timeout} ms\nstatus: ${JSON.stringify(status)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Waits until the aggregate `id` has `n` events in `page`, all confirmed by the server. */
const confirmed = (page, id, n) => eventually(
  page,
  async ({ id, n }) => {
    const events = await window.store.readStream("Ledger", id);
    return events.length === n && events.every((e) => !e.pending);
  },
  { id, n },
  `${n} confirmed events of ${id}`,
);

const settledSync = (page, what) => until(
  page,
  () => { const s = window.store.sync.status(); return s.online === true && s.pending === 0 && !s.pushing; },
  what,
);

/** The page's confirmed log: [eventId, position, aggregateId, version]. */
const localLog = (page) => page.evaluate(async () =>
  (await window.store.readAll(1, 10000)).map((e) => [e.eventId, e.position, e.aggregateId, e.version]));

const append = (page, id, expected, n) => page.evaluate(async ({ id, expected, n }) => {
  const events = Array.from({ length: n }, (_, i) => ({ type: "Deposited", data: { cents: i + 1 } }));
  return window.store.append("Ledger", id, expected, events);
}, { id, expected, n });

test("two devices offline, appending to different aggregates, converge on one log", async () => {
  const [a, b] = [await device(), await device()];
  const db = fresh("converge");
  await openStore(a.page, db);
  await openStore(b.page, db);
  await settledSync(a.page, "a online");
  await settledSync(b.page, "b online");
  await a.context.setOffline(true);
  await b.context.setOffline(true);
  const [idA, idB] = [fresh("a"), fresh("b")];
  for (let i = 0; i < 3; i++) {
    const appended = await append(a.page, idA, i, 1);
    assert.equal(appended.pending, true);
    assert.equal(appended.firstPosition, null);
    await append(b.page, idB, i * 2, 2);
  }
  // The optimistic view: loads and reads show the pending events at once.
  const loaded = await a.page.evaluate((id) => window.store.load("Ledger", id, 1), idA);
  assert.equal(loaded.version, 3);
  assert.ok(loaded.events.every((e) => e.pending === true && e.position === null));
  assert.equal(await a.page.evaluate((id) => window.store.currentVersion("Ledger", id), idA), 3);
  await until(a.page, () => window.store.sync.status().online === false, "a sees it is offline");
  assert.equal(await a.page.evaluate(() => window.store.sync.status().pending), 3);

  await a.context.setOffline(false);
  await b.context.setOffline(false);
  await a.page.evaluate(() => window.store.sync.syncNow());
  await b.page.evaluate(() => window.store.sync.syncNow());
  await confirmed(a.page, idA, 3);
  await confirmed(b.page, idB, 6);
  const server = await serverLog();
  const ours = server.filter((e) => e.aggregate_id === idA || e.aggregate_id === idB);
  assert.equal(ours.length, 9, "every event once on the server");
  const head = server.at(-1).position;
  for (const { page } of [a, b]) {
    await page.waitForFunction((head) => window.store.sync.status().pulledUpTo >= head, head);
  }
  const [logA, logB] = [await localLog(a.page), await localLog(b.page)];
  assert.deepEqual(logA, logB, "identical logs");
  assert.deepEqual(logA, server.map((e) => [e.event_id, e.position, e.aggregate_id, e.version]), "the server's order");
  await a.context.close();
  await b.context.close();
});

test("a conflict on one aggregate is rebased by the callback, or parked without one", async () => {
  const [a, b, c] = [await device(), await device(), await device()];
  const db = fresh("conflict");
  const id = fresh("shared");
  await openStore(a.page, db);
  await openStore(b.page, db, { rebase: "append-again" });
  await openStore(c.page, db);
  for (const { page } of [a, b, c]) await settledSync(page, "online");
  for (const { context } of [a, b, c]) await context.setOffline(true);
  await append(a.page, id, 0, 2);
  await append(b.page, id, 0, 1);
  await append(c.page, id, 0, 1);
  await a.context.setOffline(false);
  await a.page.evaluate(() => window.store.sync.syncNow());
  await settledSync(a.page, "a's events stored first");

  // b: its rebase runs the command again on the server's version 2.
  await b.context.setOffline(false);
  await b.page.evaluate(() => window.store.sync.syncNow());
  await settledSync(b.page, "b rebased and pushed");
  assert.equal(await b.page.evaluate(() => window.conflicts), 1);
  // c: no callback, its event is parked, kept and reported.
  await c.context.setOffline(false);
  await c.page.evaluate(() => window.store.sync.syncNow());
  await until(c.page, () => window.store.sync.status().parked === 1, "c parked its event");
  const outbox = await c.page.evaluate(() => window.store.sync.outbox());
  assert.equal(outbox.length, 1);
  assert.equal(outbox[0].state, "parked");
  assert.match(outbox[0].reason, /conflict: Ledger .* is at version \d+ on the server/);

  const stream = (await serverLog()).filter((e) => e.aggregate_id === id);
  assert.deepEqual(stream.map((e) => e.version), [1, 2, 3], "a's two events, then b's rebased one");
  for (const { page } of [a, b, c]) {
    await eventually(page, async (id) => (await window.store.currentVersion("Ledger", id)) === 3, id, "version 3");
    const ids = await page.evaluate(async (id) => (await window.store.readStream("Ledger", id)).map((e) => e.eventId), id);
    assert.deepEqual(ids, stream.map((e) => e.event_id), "every device converges");
  }
  assert.equal(await c.page.evaluate((seq) => window.store.sync.discard(seq), outbox[0].seq), true);
  for (const { context } of [a, b, c]) await context.close();
});

test("a push whose answer is lost after the server committed is retried, stored once", async () => {
  const { context, page } = await device();
  await openStore(page, fresh("lost"));
  await settledSync(page, "online");
  const id = fresh("lost");
  site.proxy.losePushAnswers = 1;
  const lostBefore = site.proxy.lost;
  await append(page, id, 0, 3);
  await confirmed(page, id, 3);
  assert.equal(site.proxy.lost, lostBefore + 1, "an answer was lost");
  const stream = (await serverLog()).filter((e) => e.aggregate_id === id);
  assert.equal(stream.length, 3, "nothing stored twice");
  assert.deepEqual(stream.map((e) => e.version), [1, 2, 3]);
  await context.close();
});

test("a tab closed between the local append and the push: the next open pushes it", async () => {
  const context = await browser.newContext();
  const db = fresh("closed");
  const id = fresh("closed");
  let page = await openPage(context);
  await openStore(page, db);
  await settledSync(page, "online");
  await context.setOffline(true);
  await append(page, id, 0, 2);
  await page.close();
  await context.setOffline(false);
  page = await openPage(context);
  await openStore(page, db);
  await settledSync(page, "pushed after reopening");
  const stream = (await serverLog()).filter((e) => e.aggregate_id === id);
  assert.equal(stream.length, 2);
  await context.close();
});

test("the leader tab closed mid-push: another tab takes over, nothing lost or doubled", async () => {
  const context = await browser.newContext();
  const db = fresh("leader");
  const first = await openPage(context);
  await openStore(first, db);
  await settledSync(first, "first online");
  const second = await openPage(context);
  await openStore(second, db);
  assert.equal(await first.evaluate(() => window.store.sync.status().leader), true);
  assert.equal(await second.evaluate(() => window.store.sync.status().leader), false);
  const id = fresh("leader");
  site.proxy.holdPushMs = 1500;
  const pushesBefore = site.proxy.pushes;
  await append(second, id, 0, 4); // a follower's append: the leader pushes it
  await until(first, () => window.store.sync.status().pushing, "the leader is pushing");
  await first.close();
  site.proxy.holdPushMs = 0;
  await until(second, () => window.store.sync.status().leader, "the other tab leads");
  await settledSync(second, "the new leader pushed");
  assert.ok(site.proxy.pushes > pushesBefore);
  const stream = (await serverLog()).filter((e) => e.aggregate_id === id);
  assert.deepEqual(stream.map((e) => e.version), [1, 2, 3, 4], "every event, once");
  await context.close();
});

test("an append too large for the server is parked and the rest of the outbox goes on", async () => {
  const { context, page } = await device();
  await openStore(page, fresh("large"));
  await settledSync(page, "online");
  await context.setOffline(true);
  const [big, small] = [fresh("big"), fresh("small")];
  await page.evaluate(async ({ big, small }) => {
    // Over the server's 8 MiB body limit.
    await window.store.append("Ledger", big, 0, [{ type: "Blob", data: "x".repeat(9 << 20) }]);
    await window.store.append("Ledger", small, 0, [{ type: "Deposited", data: { cents: 1 } }]);
  }, { big, small });
  await context.setOffline(false);
  await page.evaluate(() => window.store.sync.syncNow());
  await confirmed(page, small, 1);
  await until(page, () => window.store.sync.status().parked === 1, "the large append parked");
  const outbox = await page.evaluate(() => window.store.sync.outbox());
  assert.equal(outbox.length, 1);
  assert.equal(outbox[0].aggregateId, big);
  assert.match(outbox[0].reason, /too large/);
  await context.close();
});

test("the ledger demo syncs two browsers: offline entries, a conflict shown and resolved", async () => {
  const db = fresh("demo");
  const open = async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${site.origin}/demo/?sync=${encodeURIComponent(`${site.origin}/sync`)}&db=${db}`);
    await page.waitForFunction(() => ["ready", "error"].includes(document.getElementById("status").textContent));
    await page.waitForFunction(() => document.getElementById("sync").dataset.online === "true");
    return { context, page };
  };
  const text = (page, id) => page.locator(`#${id}`).textContent();
  const record = async (page, button, memo, amount) => {
    await page.fill("#memo", memo);
    await page.fill("#amount", amount);
    await page.click(button);
    await page.waitForFunction(() => ["ready", "error", "refused"].includes(document.getElementById("status").textContent));
    assert.equal(await text(page, "status"), "ready", await text(page, "error"));
  };
  const version = (page, v) => page.waitForFunction((v) => document.getElementById("version").textContent === String(v), v, { timeout: 15000 });
  const [a, b] = [await open(), await open()];
  assert.match(await text(a.page, "sync"), /^online · 0 pending/);
  await record(a.page, "#deposit", "salary", "100");
  await version(b.page, 1);
  assert.equal(await text(b.page, "balance"), "100.00", "the other browser shows the same ledger");

  // Offline: entries wait, the status line says so.
  await a.context.setOffline(true);
  await b.context.setOffline(true);
  await record(a.page, "#deposit", "gift", "10");
  await record(b.page, "#withdraw", "rent", "30");
  await a.page.waitForFunction(() => /^offline · 1 pending/.test(document.getElementById("sync").textContent));
  assert.equal(await text(a.page, "balance"), "110.00", "the pending entry shows at once");

  // Back online: a's entry lands first; b's withdrawal conflicts, is decided again on the
  // new balance, and both browsers converge.
  await a.context.setOffline(false);
  await a.page.waitForFunction(() => document.getElementById("sync").dataset.pending === "0", null, { timeout: 15000 });
  await b.context.setOffline(false);
  await b.page.waitForFunction(() => document.getElementById("conflict").textContent.startsWith("Conflict at version 2"), null, { timeout: 15000 });
  for (const { page } of [a, b]) {
    await version(page, 3);
    await page.waitForFunction(() => document.getElementById("balance").textContent === "80.00", null, { timeout: 15000 });
    await page.waitForFunction(() => document.getElementById("sync").dataset.pending === "0");
  }
  assert.match(await text(b.page, "conflict"), /1 of yours were recorded again/);
  // A refused command is the user's to correct, not a store error.
  await b.page.fill("#memo", "car");
  await b.page.fill("#amount", "1000");
  await b.page.click("#withdraw");
  await b.page.waitForFunction(() => document.getElementById("status").textContent === "refused");
  assert.match(await text(b.page, "refused"), /^Insufficient funds/);
  assert.equal(await text(b.page, "error"), "");
  await a.context.close();
  await b.context.close();
});

test("the initial sync of 100,000 events is paged and resumes after a reload", async () => {
  // The server gets 100,000 events, 1,000 appends of 100 at a time.
  const id = fresh("big");
  const started = Date.now();
  for (let batch = 0; batch < 10; batch++) {
    const appends = Array.from({ length: 100 }, (_, i) => {
      const n = batch * 100 + i;
      return {
        aggregate_type: "Ledger", aggregate_id: `${id}-${n % 50}`, expected_version: Math.floor(n / 50) * 100,
        events: Array.from({ length: 100 }, (_, k) => ({ event_id: crypto.randomUUID(), event_type: "Deposited", payload: { cents: k, memo: `entry ${k}` } })),
      };
    });
    const answer = await fetch(`${sync.base}/push`, { method: "POST", body: JSON.stringify({ protocol: 1, appends }) });
    assert.equal(answer.status, 200);
    const { results } = await answer.json();
    assert.ok(results.every((r) => r.status === "applied"), JSON.stringify(results.find((r) => r.status !== "applied")));
  }
  console.log(`seeded 100,000 events in ${Date.now() - started} ms`);
  const head = (await serverLog()).at(-1).position;

  // A first device syncs from nothing: the figure.
  const timed = await device();
  const db = fresh("initial");
  const syncStarted = Date.now();
  await openStore(timed.page, db);
  await until(timed.page, (head) => window.store.sync.status().pulledUpTo >= head, "initial sync", { arg: head, timeout: 120000 });
  const seconds = (Date.now() - syncStarted) / 1000;
  console.log(`initial sync of ${head} events: ${seconds.toFixed(2)} s, ${Math.round(head / seconds)} events/s`);
  await timed.context.close();

  // Another device is reloaded halfway: it goes on from where it stopped.
  const { context, page } = await device();
  const db2 = fresh("resumed");
  await openStore(page, db2);
  await until(page, () => window.store.sync.status().pulledUpTo >= 30000, "a third of the log", { timeout: 120000 });
  const pullsBefore = site.proxy.pullsAfter.length;
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === "true");
  await openStore(page, db2);
  await until(page, (head) => window.store.sync.status().pulledUpTo >= head, "the rest", { arg: head, timeout: 120000 });
  const count = await page.evaluate(async () => {
    let n = 0;
    for (let from = 1; ;) {
      const page = await window.store.readAll(from, 10000);
      n += page.length;
      if (page.length < 10000) return n;
      from = page.at(-1).position + 1;
    }
  });
  assert.ok(count >= 100000, `${count} events pulled`);
  const resumedAfter = site.proxy.pullsAfter[pullsBefore];
  assert.ok(resumedAfter >= 30000, `the first pull after the reload starts after ${resumedAfter}, not from the start`);
  await context.close();
});
