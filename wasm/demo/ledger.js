// The ledger demo: a JavaScript reducer over events kept in IndexedDB by eventkv.
// No bundler: this module imports the package wasm-pack built in ../pkg.
import init, { EventStore } from "../pkg/eventkv_wasm.js";

const DATABASE = "eventkv-ledger-demo";
const TYPE = "Ledger";
const ID = "household";
/** The version of the state's shape below: bump it when the shape changes. */
const SCHEMA_VERSION = 1;
const SNAPSHOT_EVERY = Number(new URLSearchParams(location.search).get("every") ?? 100);
const SHOWN_ENTRIES = 20;

// The reducer. Amounts are whole cents, so sums stay exact.
const initialState = () => ({ balanceCents: 0, entries: [] });

function apply(state, event) {
  const { cents, memo } = event.data;
  const signed = event.type === "Deposited" ? cents : -cents;
  const entry = { version: event.version, type: event.type, memo, cents };
  return {
    balanceCents: state.balanceCents + signed,
    entries: [...state.entries.slice(1 - SHOWN_ENTRIES), entry],
  };
}

const $ = (id) => document.getElementById(id);
const channel = new BroadcastChannel(DATABASE);
/** The open store; replaced by `reopen`. */
let store;
let ledger = { state: initialState(), version: 0 };

function show(info) {
  $("balance").textContent = (ledger.state.balanceCents / 100).toFixed(2);
  $("version").textContent = ledger.version;
  if (info) {
    $("source").textContent = info.source;
    $("snapshot-version").textContent = info.snapshotVersion ?? "none";
    $("replayed").textContent = info.replayed;
    $("load-ms").textContent = info.loadMs.toFixed(1);
  }
  $("entries").replaceChildren(
    ...ledger.state.entries.toReversed().map((entry) => {
      const item = document.createElement("li");
      item.value = entry.version;
      const sign = entry.type === "Deposited" ? "+" : "−";
      item.textContent = `${sign}${(entry.cents / 100).toFixed(2)} ${entry.memo}`;
      return item;
    }),
  );
}

/** Rebuilds the ledger: the latest snapshot, then the events after it. */
async function load() {
  const started = performance.now();
  try {
    const loaded = await store.load(TYPE, ID, SCHEMA_VERSION);
    let state = loaded.snapshot ? loaded.snapshot.state : initialState();
    for (const event of loaded.events) state = apply(state, event);
    ledger = { state, version: loaded.version };
    show({
      source: loaded.snapshot ? "snapshot" : `full replay${loaded.snapshotMiss ? ` (${loaded.snapshotMiss})` : ""}`,
      snapshotVersion: loaded.snapshot?.version,
      replayed: loaded.events.length,
      loadMs: performance.now() - started,
    });
  } catch (error) {
    if (error.code !== "NotFound") throw error;
    ledger = { state: initialState(), version: 0 };
    show({ source: "new ledger", replayed: 0, loadMs: performance.now() - started });
  }
}

/** Appends `events` at the ledger's version; snapshots when a multiple of SNAPSHOT_EVERY is crossed. */
async function record(events) {
  try {
    const appended = await store.append(TYPE, ID, ledger.version, events);
    let state = ledger.state;
    events.forEach((event, i) => {
      state = apply(state, { ...event, version: appended.firstVersion + i });
    });
    ledger = { state, version: appended.lastVersion };
    if (Math.floor(appended.lastVersion / SNAPSHOT_EVERY) > Math.floor((appended.firstVersion - 1) / SNAPSHOT_EVERY)) {
      await store.saveSnapshot({
        aggregateType: TYPE, aggregateId: ID, version: ledger.version, schemaVersion: SCHEMA_VERSION, state,
      });
    }
    show();
    channel.postMessage(ledger.version);
  } catch (error) {
    if (error.code !== "Conflict") throw error;
    // Another tab wrote first: take its events, and let the user decide again.
    await load();
    throw new Error(`Another tab recorded entries first (version ${error.actual}); the ledger is reloaded, nothing of yours was recorded.`);
  }
}

/** Runs `task`, showing its status and any error with its code. */
async function run(task) {
  $("status").textContent = "working…";
  $("error").textContent = "";
  try {
    await task();
    $("status").textContent = "ready";
  } catch (error) {
    $("status").textContent = "error";
    $("error").textContent = error.code ? `${error.code}: ${error.message}` : String(error);
  }
}

$("entry").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  const form = submitted.target;
  const cents = Math.round(Number(form.amount.value) * 100);
  const event = { type: submitted.submitter.value, data: { cents, memo: form.memo.value } };
  run(() => record([event]));
});

$("bulk").addEventListener("click", () => run(() => record(
  Array.from({ length: 1000 }, (_, i) => ({ type: "Deposited", data: { cents: 1, memo: `bulk ${i + 1}` } })),
)));

/** (Re)opens the store and loads the ledger: after another tab wrote, or deleted everything. */
async function reopen() {
  store?.close();
  store = await EventStore.open(DATABASE);
  await load();
}

// Deleting the database closes the other tabs' connections (they would reject with
// "Closed"); the message makes them open it again.
$("reset").addEventListener("click", () => run(async () => {
  store.close();
  await EventStore.deleteDatabase(DATABASE);
  await reopen();
  channel.postMessage("reset");
}));

channel.addEventListener("message", () => run(reopen));

$("every").textContent = SNAPSHOT_EVERY;
run(async () => {
  await init();
  const persisted = await navigator.storage?.persist?.();
  $("storage").textContent = persisted ? "persistent" : "best effort (the browser may evict it)";
  await reopen();
});
