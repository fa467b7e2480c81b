// Load timings of the JS API in headless Chromium (release package in ../pkg): an
// aggregate of 10,000 events loaded by full replay, and from a snapshot 99 events behind.
// Run on demand: `node bench.mjs` (after `wasm-pack build --target web --mode no-install`).
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";

const EVENTS = Number(process.env.EVENTS ?? 10_000);
const LOADS = 15;
const server = await serve();
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  await page.goto(`${server.origin}/demo/`);
  const results = await page.evaluate(async ({ EVENTS, LOADS }) => {
    const { default: init, EventStore } = await import("/pkg/eventkv_wasm.js");
    await init();
    const store = await EventStore.open(`eventkv-bench-${crypto.randomUUID()}`);
    let state = { balance: 0 };
    const apply = (s, e) => ({ balance: s.balance + e.data.amount });
    for (let version = 0; version < EVENTS; version += 1000) {
      const batch = Array.from({ length: 1000 }, (_, i) => ({ type: "Deposited", data: { amount: version + i } }));
      await store.append("Account", "acc", version, batch);
    }
    const median = async () => {
      const samples = [];
      for (let i = 0; i <= LOADS; i++) {
        const started = performance.now();
        const loaded = await store.load("Account", "acc", 1);
        let s = loaded.snapshot ? loaded.snapshot.state : { balance: 0 };
        for (const event of loaded.events) s = apply(s, event);
        state = s;
        if (i > 0) samples.push(performance.now() - started); // the first is a warm-up
      }
      samples.sort((a, b) => a - b);
      return samples[Math.floor(samples.length / 2)];
    };
    const full = await median();
    const behind = 99;
    await store.saveSnapshot({ aggregateType: "Account", aggregateId: "acc", version: EVENTS - behind, schemaVersion: 1, state: { balance: (EVENTS - behind) * (EVENTS - behind - 1) / 2 } });
    const snapshot = await median();
    const loaded = await store.load("Account", "acc", 1);
    const name = store.name;
    store.close();
    await EventStore.deleteDatabase(name);
    return { full, snapshot, replayed: loaded.events.length, balance: state.balance, expected: EVENTS * (EVENTS - 1) / 2 };
  }, { EVENTS, LOADS });
  if (results.balance !== results.expected) throw new Error(`wrong balance ${results.balance}, expected ${results.expected}`);
  console.log(`JS API load of ${EVENTS} events, median of ${LOADS} (headless Chromium, release):`);
  console.log(`  full replay:              ${results.full.toFixed(1)} ms`);
  console.log(`  snapshot ${results.replayed} events behind: ${results.snapshot.toFixed(1)} ms`);
} finally {
  await browser.close();
  await server.close();
}
