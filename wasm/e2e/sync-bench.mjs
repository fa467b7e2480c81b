// Sync figures in headless Chromium against a real `eventkv serve` (release build) on a
// temporary SQLite file, run on demand after `wasm-pack build --target web --mode
// no-install --release` and `cargo build --release -p eventkv-cli`:
//
//   node sync-bench.mjs    initial sync of 100,000 events into a fresh browser; a push of
//                          1,000 appends queued offline; live propagation tab A -> server
//                          -> tab B (p50/p99 of 200 events). RUNS (default 3) runs each.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";

const BIN = process.env.EVENTKV_BIN ?? fileURLToPath(new URL("../../target/release/eventkv", import.meta.url));
const RUNS = Number(process.env.RUNS ?? 3);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const percentile = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]; };

async function server(dir) {
  const child = spawn(BIN, ["serve", `sqlite:${join(dir, `s-${crypto.randomUUID()}.sqlite`)}`, "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "ignore"] });
  const line = await new Promise((resolve) => createInterface({ input: child.stdout }).once("line", resolve));
  return { child, base: line.replace(/^listening on /, "") };
}

async function seed(base, events) {
  for (let done = 0; done < events; done += 10_000) {
    const appends = Array.from({ length: 100 }, (_, i) => ({
      aggregate_type: "Ledger", aggregate_id: `seed-${done / 100 + i}`, expected_version: 0,
      events: Array.from({ length: 100 }, (_, k) => ({ event_id: crypto.randomUUID(), event_type: "Deposited", payload: { cents: k, memo: `entry ${k}` } })),
    }));
    const answer = await fetch(`${base}/push`, { method: "POST", body: JSON.stringify({ protocol: 1, appends }) });
    if (answer.status !== 200) throw new Error(await answer.text());
  }
}

async function page(browser, site, db) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${site.origin}/e2e/sync.html`);
  await page.waitForFunction(() => document.body.dataset.ready === "true");
  await page.evaluate(async ({ db, url }) => {
    window.store = await window.eventkv.EventStore.open(db, { sync: { url } });
  }, { db, url: `${site.origin}/sync` });
  return { context, page };
}

const dir = mkdtempSync(join(tmpdir(), "eventkv-sync-bench-"));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const results = { initialSync: [], push1000: [], propagation: [] };
try {
  for (let run = 0; run < RUNS; run++) {
    const sync = await server(dir);
    const site = await serve({ sync: sync.base });
    try {
      await seed(sync.base, 100_000);
      // Initial sync of 100,000 events.
      const started = Date.now();
      const fresh = await page(browser, site, "initial");
      await fresh.page.waitForFunction(() => window.store.sync.status().pulledUpTo >= 100000, null, { timeout: 300000, polling: 20 });
      results.initialSync.push(100_000 / ((Date.now() - started) / 1000));

      // 1,000 appends queued offline (10 aggregates), then online: until all are confirmed.
      await fresh.context.setOffline(true);
      await fresh.page.evaluate(async () => {
        for (let i = 0; i < 1000; i++) {
          await window.store.append("Ledger", `queued-${i % 10}`, Math.floor(i / 10), [{ type: "Deposited", data: { cents: i } }]);
        }
      });
      const pushStarted = Date.now();
      await fresh.context.setOffline(false);
      await fresh.page.evaluate(() => window.store.sync.syncNow());
      await fresh.page.waitForFunction(() => window.store.sync.status().pending === 0, null, { timeout: 60000, polling: 10 });
      results.push1000.push(Date.now() - pushStarted);

      // Live propagation: A appends, B's subscription gets it through the server.
      const other = await page(browser, site, "other");
      await other.page.waitForFunction(() => window.store.sync.status().pulledUpTo >= 101000, null, { timeout: 300000, polling: 20 });
      await other.page.evaluate(async () => {
        const from = (await window.store.readAll(1, 1)).length ? window.store.sync.status().pulledUpTo + 1 : 1;
        window.latencies = [];
        window.store.subscribe(from, (events) => {
          for (const event of events) if (event.data.sentAt) window.latencies.push(Date.now() - event.data.sentAt);
        });
      });
      for (let i = 0; i < 200; i++) {
        await fresh.page.evaluate(async (i) => {
          await window.store.append("Ledger", "live", i, [{ type: "Sent", data: { sentAt: Date.now() } }]);
        }, i);
        try {
          await other.page.waitForFunction((n) => window.latencies.length >= n, i + 1, { timeout: 10000, polling: 5 });
        } catch (error) {
          const a = await fresh.page.evaluate(() => window.store.sync.status());
          const b = await other.page.evaluate(async () => [window.store.sync.status(), window.latencies.length, (await window.store.readStream("Ledger", "live")).length]);
          throw new Error(`event ${i} did not arrive: A ${JSON.stringify(a)} B ${JSON.stringify(b)}`);
        }
      }
      results.propagation.push(...await other.page.evaluate(() => window.latencies));
      await fresh.context.close();
      await other.context.close();
    } finally {
      await site.close();
      sync.child.kill("SIGTERM");
    }
  }
} finally {
  await browser.close();
  rmSync(dir, { recursive: true, force: true });
}
console.log(`initial sync of 100,000 events: median ${Math.round(median(results.initialSync))} events/s (runs: ${results.initialSync.map(Math.round).join(", ")})`);
console.log(`push of 1,000 queued appends until confirmed: median ${median(results.push1000)} ms (runs: ${results.push1000.join(", ")})`);
console.log(`live propagation tab A -> server -> tab B: p50 ${percentile(results.propagation, 0.5)} ms, p99 ${percentile(results.propagation, 0.99)} ms (${results.propagation.length} events)`);
