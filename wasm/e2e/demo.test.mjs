// End-to-end: the ledger demo and the npm package in real headless Chromium
// (playwright-core driving Debian's /usr/bin/chromium), and the package in Node.
// Needs `wasm-pack build --target web --mode no-install` run in `wasm/` first.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
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
  assert.equal(await text(page, "source"), "snapshot");
  assert.equal(await text(page, "snapshot-version"), "1002");
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

test("a write over the origin's quota rejects with QuotaExceeded and lands nothing", async () => {
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
  assert.equal(result.error?.code, "QuotaExceeded", JSON.stringify(result.error));
  assert.equal(result.error.name, "EventKvError");
  assert.equal(result.versionAfter, 0, "nothing of the refused append landed");
  assert.equal(result.small.lastVersion, 1, "a write that fits still lands");
  await context.close();
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
