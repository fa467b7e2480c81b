// End-to-end: the ledger demo and the npm package in real headless Chromium
// (playwright-core driving Debian's /usr/bin/chromium), and the package in Node.
// Needs `wasm-pack build --target web --mode no-install` run in `wasm/` first.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const PKG = new URL("../pkg/", import.meta.url);

let server;
let browser;

before(async () => {
  assert.ok(
    existsSync(new URL("eventkv_wasm.js", PKG)),
    "wasm/pkg is missing: run `wasm-pack build --target web --mode no-install` in wasm/ first",
  );
  server = await serve();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await server?.close();
});

const text = (page, id) => page.locator(`#${id}`).textContent();

/** Waits until the demo finished what it was doing; fails with the error it shows. */
async function settled(page) {
  await page.waitForFunction(() => ["ready", "error"].includes(document.getElementById("status").textContent));
  assert.equal(await text(page, "status"), "ready", await text(page, "error"));
}

async function record(page, button, memo, amount) {
  await page.fill("#memo", memo);
  await page.fill("#amount", amount);
  await page.click(button);
  await settled(page);
}

test("the ledger survives a reload and loads from its latest snapshot", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${server.origin}/demo/?every=1000`);
  await settled(page);
  assert.equal(await text(page, "version"), "0");
  assert.equal(await text(page, "source"), "new ledger");

  await record(page, "#deposit", "salary", "100");
  await record(page, "#withdraw", "rent", "30");
  await page.click("#bulk"); // 1,000 events in one append: crosses 1,000, snapshot at 1,002
  await settled(page);
  for (const memo of ["a", "b", "c"]) await record(page, "#deposit", memo, "1");
  assert.equal(await text(page, "version"), "1005");
  assert.equal(await text(page, "balance"), "83.00");

  await page.reload();
  await settled(page);
  assert.equal(await text(page, "version"), "1005");
  assert.equal(await text(page, "balance"), "83.00");
  assert.equal(await text(page, "source"), "snapshot at version 1002");
  assert.equal(await text(page, "snapshot-version"), "1002");
  assert.equal(await text(page, "pending"), "3");
  assert.equal(await text(page, "replayed"), "3");
  assert.ok(Number(await text(page, "load-ms")) >= 0);
  assert.match(await page.locator("#entries li").first().textContent(), /^\+1\.00 c$/);

  // Another tab of the same origin sees the same ledger, and follows this one's writes.
  const other = await context.newPage();
  await other.goto(`${server.origin}/demo/?every=1000`);
  await settled(other);
  assert.equal(await text(other, "version"), "1005");
  await record(page, "#withdraw", "coffee", "3.50");
  await other.waitForFunction(() => document.getElementById("version").textContent === "1006");
  assert.equal(await text(other, "balance"), "79.50");

  // Deleting everything in one tab is not blocked by the other, which follows.
  page.once("dialog", (dialog) => dialog.accept());
  await page.click("#reset");
  await settled(page);
  assert.equal(await text(page, "version"), "0");
  await other.waitForFunction(() => document.getElementById("version").textContent === "0");
  await settled(other);
  assert.equal(await text(other, "source"), "new ledger");
  await record(other, "#deposit", "fresh start", "5");
  await page.waitForFunction(() => document.getElementById("version").textContent === "1");
  assert.equal(await text(page, "balance"), "5.00");
  await context.close();
});

/** Opens the demo in a fresh context; collects the page's failed requests. */
async function demo(query = "") {
  const context = await browser.newContext();
  const page = await context.newPage();
  const failed = [];
  page.on("response", (response) => response.status() >= 400 && failed.push(`${response.status()} ${response.url()}`));
  page.on("requestfailed", (request) => failed.push(`failed ${request.url()}`));
  await page.goto(`${server.origin}/demo/${query}`);
  await settled(page);
  return { context, page, failed };
}

/** The totals table: category → [entries, total]. */
async function totalsOf(page) {
  return page.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll("#totals tbody tr")].map((row) => [
      row.dataset.category,
      [Number(row.cells[1].textContent), row.cells[2].textContent],
    ]),
  ));
}

test("the totals read model follows another tab's entries live and survives a reload", async () => {
  const context = await browser.newContext();
  const writer = await context.newPage();
  await writer.goto(`${server.origin}/demo/`);
  await settled(writer);
  const reader = await context.newPage();
  await reader.goto(`${server.origin}/demo/`);
  await settled(reader);
  assert.equal(await text(reader, "totals-position"), "0");

  await writer.selectOption("#category", "income");
  await record(writer, "#deposit", "salary", "100");
  await writer.selectOption("#category", "food");
  await record(writer, "#withdraw", "groceries", "12.50");
  await writer.selectOption("#category", "food"); // the form resets after each entry
  await record(writer, "#withdraw", "bakery", "2.25");
  // Told through a BroadcastChannel, not found by its 30 s safety poll.
  await reader.waitForFunction(
    () => document.getElementById("totals-position").textContent === "3",
    null,
    { timeout: 5000 },
  );
  const expected = { food: [2, "-14.75"], income: [1, "100.00"] };
  assert.deepEqual(await totalsOf(reader), expected);
  await writer.waitForFunction(() => document.getElementById("totals-position").textContent === "3");
  assert.deepEqual(await totalsOf(writer), expected);

  // A reload shows the saved totals at once, then goes on from their checkpoint.
  await reader.reload();
  await settled(reader);
  assert.equal(await text(reader, "totals-position"), "3");
  assert.deepEqual(await totalsOf(reader), expected);
  await writer.selectOption("#category", "housing");
  await record(writer, "#withdraw", "rent", "30");
  await reader.waitForFunction(
    () => document.getElementById("totals-position").textContent === "4",
    null,
    { timeout: 5000 },
  );
  assert.deepEqual(await totalsOf(reader), { ...expected, housing: [1, "-30.00"] });
  await context.close();
});

test("the panel shows the latest snapshot and the events a reload would replay, live", async () => {
  const { context, page, failed } = await demo("?every=10");
  assert.equal(await text(page, "snapshot-version"), "none");
  assert.equal(await text(page, "pending"), "0");
  await record(page, "#deposit", "first", "1");
  assert.equal(await text(page, "snapshot-version"), "none");
  assert.equal(await text(page, "pending"), "1");
  await page.click("#bulk"); // to version 1,001: crosses 1,000, a snapshot at 1,001
  await settled(page);
  assert.equal(await text(page, "snapshot-version"), "1001");
  assert.equal(await text(page, "pending"), "0");
  await record(page, "#deposit", "second", "2");
  assert.equal(await text(page, "snapshot-version"), "1001");
  assert.equal(await text(page, "pending"), "1");
  // The form is cleared after an entry is recorded.
  assert.equal(await page.inputValue("#memo"), "");
  assert.equal(await page.inputValue("#amount"), "");
  await page.reload();
  await settled(page);
  assert.equal(await text(page, "source"), "snapshot at version 1001");
  assert.equal(await text(page, "replayed"), "1");
  assert.deepEqual(failed, [], "no request failed (the page asks for no favicon.ico)");
  await context.close();
});

test("the ledger's rules refuse bad entries with a clear message and record nothing", async () => {
  const { context, page } = await demo();
  await record(page, "#deposit", "salary", "10");
  const refused = async (button, memo, amount, message) => {
    await page.fill("#memo", memo);
    await page.fill("#amount", amount);
    await page.click(button);
    await page.waitForFunction(() => ["ready", "error", "refused"].includes(document.getElementById("status").textContent));
    assert.equal(await text(page, "status"), "refused", "a domain rule, not a store error");
    assert.match(await text(page, "refused"), message);
    assert.equal(await text(page, "error"), "");
    assert.equal(await text(page, "version"), "1", "nothing was recorded");
    assert.equal(await page.inputValue("#amount"), amount, "the form keeps a refused entry for correction");
  };
  await refused("#deposit", "oops", "-5", /^The amount must be more than 0\.00, not -5\.00/);
  await refused("#deposit", "zero", "0", /more than 0\.00/);
  await refused("#withdraw", "rent", "30", /^Insufficient funds: the balance is 10\.00, the withdrawal 30\.00\.$/);
  await refused("#deposit", "cents", "1.234", /more than two decimals/);
  await refused("#deposit", " ", "1", /memo must not be empty/);
  await record(page, "#withdraw", "all of it", "10");
  assert.equal(await text(page, "balance"), "0.00");
  await context.close();
});

test("a bad ?every is named and the default is used", async () => {
  for (const every of ["abc", "0", "-5", "1.5"]) {
    const { context, page } = await demo(`?every=${every}`);
    assert.equal(await text(page, "every"), "100");
    assert.equal(
      await text(page, "notice"),
      `?every must be a whole number of events from 1, not "${every}": snapshots are taken every 100 events instead.`,
    );
    await page.click("#bulk");
    await settled(page);
    assert.equal(await text(page, "snapshot-version"), "1000", `every=${every}: snapshots every 100 events`);
    await context.close();
  }
});

test("deleting everything asks first; declining keeps the ledger", async () => {
  const { context, page } = await demo();
  await record(page, "#deposit", "keep", "5");
  let asked;
  page.once("dialog", (dialog) => {
    asked = dialog.message();
    dialog.dismiss();
  });
  await page.click("#reset");
  await settled(page);
  assert.match(asked, /^Delete all 1 entries of this ledger, in every tab\?/);
  assert.equal(await text(page, "version"), "1");
  page.once("dialog", (dialog) => dialog.accept());
  await page.click("#reset");
  await settled(page);
  assert.equal(await text(page, "version"), "0");
  await context.close();
});

test("through the package's own glue, a bad argument rejects with InvalidInput: no trap, no throw", async () => {
  const { context, page } = await demo();
  const results = await page.evaluate(async () => {
    const { EventStore } = await import("/pkg/eventkv_wasm.js");
    const store = await EventStore.open("eventkv-e2e-inputs");
    const ok = [{ type: "Deposited", data: { n: 1 } }];
    const calls = {
      "append(42, …)": () => store.append(42, "a", 0, ok),
      "append(T, {}, …)": () => store.append("T", {}, 0, ok),
      "append(T, true, …)": () => store.append("T", true, 0, ok),
      "append(Symbol, …)": () => store.append(Symbol("s"), "a", 0, ok),
      "append(undefined, …)": () => store.append(undefined, "a", 0, ok),
      "append(null, …)": () => store.append(null, "a", 0, ok),
      "append version '1'": () => store.append("T", "a", "1", ok),
      "append version true": () => store.append("T", "a", true, ok),
      "append version [1]": () => store.append("T", "a", [1], ok),
      "append version 1n": () => store.append("T", "a", 1n, ok),
      "append without a version": () => store.append("T", "a", ok),
      "append a lone surrogate": () => store.append("T", "y\uD800", 0, ok),
      "append BigInt data": () => store.append("T", "a", 0, [ok[0], { type: "X", data: { n: 1n } }]),
      "readStream(42, …)": () => store.readStream(42, "a"),
      "currentVersion(T, Symbol)": () => store.currentVersion("T", Symbol("s")),
      "load(T, {}, 1)": () => store.load("T", {}, 1),
      "getSnapshot(undefined, a)": () => store.getSnapshot(undefined, "a"),
      "deleteSnapshots(42)": () => store.deleteSnapshots(42),
      "readAll limit 2^53": () => store.readAll(1, 2 ** 53 - 1),
      "open(42)": () => EventStore.open(42),
      "deleteDatabase({})": () => EventStore.deleteDatabase({}),
    };
    const results = {};
    for (const [name, call] of Object.entries(calls)) {
      let promise;
      try {
        promise = call();
      } catch (thrown) {
        results[name] = { threw: `${thrown.name}: ${thrown.message}` };
        continue;
      }
      try {
        await promise;
        results[name] = { resolved: true };
      } catch (error) {
        results[name] = { name: error.name, code: error.code, message: error.message };
      }
    }
    results.version = await store.currentVersion("T", "a");
    store.close();
    await EventStore.deleteDatabase("eventkv-e2e-inputs");
    return results;
  });
  const { version, ...calls } = results;
  for (const [call, result] of Object.entries(calls)) {
    assert.equal(result.name, "EventKvError", `${call}: ${JSON.stringify(result)}`);
    assert.equal(result.code, "InvalidInput", `${call}: ${JSON.stringify(result)}`);
    assert.ok(!result.message.includes("\n") && result.message.length < 300, `${call}: one line: ${result.message}`);
  }
  assert.match(calls["append(42, …)"].message, /^aggregateType must be a string, not the number 42$/);
  assert.match(calls["append version '1'"].message, /not the string "1"/);
  assert.match(calls["append without a version"].message, /^expectedVersion is missing/);
  assert.match(calls["append BigInt data"].message, /^events\[1\]\.data: a BigInt cannot be stored as JSON/);
  assert.match(calls["append a lone surrogate"].message, /lone surrogate/);
  assert.equal(version, 0, "nothing was written");
  await context.close();
});

test("concurrent calls from one page each get their own answer, and the log has no gap", async () => {
  const { context, page } = await demo();
  const result = await page.evaluate(async () => {
    const { EventStore } = await import("/pkg/eventkv_wasm.js");
    const store = await EventStore.open("eventkv-e2e-concurrent");
    const event = (n) => [{ type: "Deposited", data: { n } }];
    await store.append("Account", "taken", 0, event(0));
    const calls = [
      ...Array.from({ length: 40 }, (_, i) => store.append("Account", `a${i % 10}-${i}`, 0, event(i))),
      ...Array.from({ length: 5 }, (_, i) => store.append("Account", "taken", 0, event(100 + i))),
      store.readAll(1, 10_000),
      store.load("Account", "taken", 1),
    ];
    const settled = await Promise.allSettled(calls);
    const all = await store.readAll(1, 10_000);
    store.close();
    await EventStore.deleteDatabase("eventkv-e2e-concurrent");
    return {
      appended: settled.slice(0, 40).map((s) => s.status),
      stale: settled.slice(40, 45).map((s) => s.reason?.code),
      actual: settled.slice(40, 45).map((s) => s.reason?.actual),
      positions: all.map((e) => e.position),
    };
  });
  assert.deepEqual(new Set(result.appended), new Set(["fulfilled"]));
  assert.deepEqual(result.stale, Array(5).fill("Conflict"));
  assert.deepEqual(result.actual, Array(5).fill(1));
  assert.deepEqual(result.positions, Array.from({ length: 41 }, (_, i) => i + 1), "gap-free, each once");
  await context.close();
});

test("a write over the origin's quota rejects with StorageFull and lands nothing", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${server.origin}/demo/`);
  await settled(page);
  const cdp = await context.newCDPSession(page);
  await cdp.send("Storage.overrideQuotaForOrigin", { origin: server.origin, quotaSize: 2 * 1024 * 1024 });
  const result = await page.evaluate(async () => {
    const { default: init, EventStore } = await import("/pkg/eventkv_wasm.js");
    await init();
    const store = await EventStore.open("eventkv-quota-test");
    const big = Array.from({ length: 100 }, (_, i) => ({ type: "Blob", data: { i, text: "x".repeat(50_000) } }));
    let error;
    try {
      await store.append("Blob", "b1", 0, big);
    } catch (thrown) {
      error = { code: thrown.code, name: thrown.name, message: thrown.message };
    }
    const versionAfter = await store.currentVersion("Blob", "b1");
    const small = await store.append("Blob", "b1", 0, [{ type: "Blob", data: { i: 0 } }]);
    store.close();
    return { error, versionAfter, small };
  });
  assert.equal(result.error?.code, "StorageFull", JSON.stringify(result.error));
  assert.equal(result.error.name, "EventKvError");
  assert.equal(result.versionAfter, 0, "nothing of the refused append landed");
  assert.equal(result.small.lastVersion, 1, "a write that fits still lands");
  await context.close();
});

test("the npm package carries its licenses", () => {
  const packed = JSON.parse(
    execFileSync("npm", ["pack", "--dry-run", "--json"], { cwd: fileURLToPath(PKG), encoding: "utf8" }),
  );
  const files = packed[0].files.map((file) => file.path);
  assert.ok(files.includes("LICENSE"), `packed: ${files}`);
  const license = readFileSync(new URL("LICENSE", PKG), "utf8");
  for (const name of ["LICENSE-MIT", "LICENSE-APACHE"]) {
    const text = readFileSync(new URL(`../../${name}`, import.meta.url), "utf8");
    assert.ok(license.includes(text.trim()), `the package's LICENSE holds the repository's ${name}`);
  }
});

test("in Node, without IndexedDB, open rejects with Unavailable", async () => {
  const { initSync, EventStore } = await import(new URL("eventkv_wasm.js", PKG));
  initSync({ module: readFileSync(new URL("eventkv_wasm_bg.wasm", PKG)) });
  await assert.rejects(EventStore.open("anything"), (error) => {
    assert.equal(error.name, "EventKvError");
    assert.equal(error.code, "Unavailable");
    assert.match(error.message, /no indexedDB/);
    return true;
  });
});
