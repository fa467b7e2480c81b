// Load timings of the JS API in headless Chromium (release package in ../pkg), run on
// demand after `wasm-pack build --target web --mode no-install --release`:
//
//   node bench.mjs            an aggregate of 10,000 events loaded by full replay and from a
//                             snapshot 99 events behind: the median of 15 loads, in each of
//                             RUNS (default 5) fresh browsers; prints the median and spread
//   node bench.mjs --million  one aggregate of 1,000,000 events: its load time, the JS
//                             heap's peak during the load, and the wasm memory after it
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";

const MILLION = process.argv.includes("--million");
const EVENTS = MILLION ? 1_000_000 : Number(process.env.EVENTS ?? 10_000);
const RUNS = MILLION ? 1 : Number(process.env.RUNS ?? 5);
const LOADS = MILLION ? 1 : 15;
const BEHIND = 99;

/** One fresh browser: appends EVENTS events, then times loads. */
async function run(server) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--enable-precise-memory-info"],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`${server.origin}/demo/`);
    return await page.evaluate(async ({ EVENTS, LOADS, BEHIND }) => {
      const { default: init, EventStore } = await import("/pkg/eventkv_wasm.js");
      const wasm = await init();
      const store = await EventStore.open(`eventkv-bench-${crypto.randomUUID()}`, { durability: "relaxed" });
      const apply = (s, e) => ({ balance: s.balance + e.data.amount });
      const batch = 10_000;
      for (let version = 0; version < EVENTS; version += batch) {
        const events = Array.from({ length: Math.min(batch, EVENTS - version) }, (_, i) => ({
          type: "Deposited",
          data: { amount: version + i },
        }));
        await store.append("Account", "acc", version, events);
      }
      let heapPeak = 0;
      const sample = () => {
        heapPeak = Math.max(heapPeak, performance.memory?.usedJSHeapSize ?? 0);
      };
      /** The median time of LOADS loads (after a warm-up), and the state the last one rebuilt. */
      const median = async () => {
        const samples = [];
        let state;
        for (let i = 0; i <= LOADS; i++) {
          const sampler = setInterval(sample, 5);
          const started = performance.now();
          let loaded = await store.load("Account", "acc", 1);
          state = loaded.snapshot ? loaded.snapshot.state : { balance: 0 };
          for (const event of loaded.events) state = apply(state, event);
          const ms = performance.now() - started;
          sample();
          clearInterval(sampler);
          loaded = null;
          if (i > 0 || LOADS === 1) samples.push(ms); // the first is a warm-up
        }
        samples.sort((a, b) => a - b);
        return { ms: samples[Math.floor(samples.length / 2)], state };
      };
      const heapBefore = performance.memory?.usedJSHeapSize ?? 0;
      const full = await median();
      const fullHeapPeak = heapPeak;
      const at = EVENTS - BEHIND;
      await store.saveSnapshot({
        aggregateType: "Account", aggregateId: "acc", version: at, schemaVersion: 1,
        state: { balance: (at * (at - 1)) / 2 },
      });
      const snapshot = await median();
      const name = store.name;
      store.close();
      await EventStore.deleteDatabase(name);
      const expected = (EVENTS * (EVENTS - 1)) / 2;
      return {
        full: full.ms,
        snapshot: snapshot.ms,
        right: full.state.balance === expected && snapshot.state.balance === expected,
        heapBefore,
        heapPeak: fullHeapPeak,
        wasmMemory: wasm.memory.buffer.byteLength,
      };
    }, { EVENTS, LOADS, BEHIND });
  } finally {
    await browser.close();
  }
}

const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const server = await serve();
try {
  const runs = [];
  for (let i = 0; i < RUNS; i++) {
    const result = await run(server);
    if (!result.right) throw new Error("a load rebuilt the wrong balance");
    runs.push(result);
  }
  const spread = (key) => {
    const values = runs.map((run) => run[key]).sort((a, b) => a - b);
    const median = values[Math.floor(values.length / 2)];
    return `${median.toFixed(1)} ms (${values[0].toFixed(1)}–${values.at(-1).toFixed(1)})`;
  };
  console.log(`JS API load of ${EVENTS.toLocaleString("en")} events, headless Chromium, release package:`);
  if (MILLION) {
    const [result] = runs;
    console.log(`  full replay:               ${result.full.toFixed(0)} ms`);
    console.log(`  snapshot ${BEHIND} events behind: ${result.snapshot.toFixed(1)} ms`);
    console.log(`  JS heap: ${mib(result.heapBefore)} before, peak ${mib(result.heapPeak)} during the full replay`);
    console.log(`  wasm memory after the loads: ${mib(result.wasmMemory)}`);
  } else {
    console.log(`  median of ${RUNS} runs (fastest–slowest), each the median of ${LOADS} loads:`);
    console.log(`  full replay:              ${spread("full")}`);
    console.log(`  snapshot ${BEHIND} events behind: ${spread("snapshot")}`);
  }
} finally {
  await server.close();
}
