// The ledger demo: a JavaScript reducer over events kept in IndexedDB by eventkv.
// No bundler: this module imports the package wasm-pack built in ../pkg.
import init, { EventStore } from "../pkg/eventkv_wasm.js";

const PARAMS = new URLSearchParams(location.search);
/** `?sync=URL`: sync with an `eventkv serve` server (`&token=` its bearer token,
 * `&rebase=off` to park conflicts instead of re-running the command). */
const SYNC = PARAMS.get("sync");
/** `?db=NAME`: another database (two ledgers side by side in one browser). */
const DATABASE = PARAMS.get("db") ?? (SYNC ? "eventkv-ledger-demo-synced" : "eventkv-ledger-demo");
const TYPE = "Ledger";
const ID = "household";
/** The version of the state's shape below: bump it when the shape changes. */
const SCHEMA_VERSION = 1;
const DEFAULT_SNAPSHOT_EVERY = 100;
const SHOWN_ENTRIES = 20;

/** `?every=N`: a snapshot every N events, N a whole number from 1; else the default, said. */
function snapshotEvery() {
  const given = PARAMS.get("every");
  if (given === null) return { every: DEFAULT_SNAPSHOT_EVERY };
  const every = Number(given);
  if (/^\d+$/.test(given.trim()) && Number.isSafeInteger(every) && every >= 1) return { every };
  return {
    every: DEFAULT_SNAPSHOT_EVERY,
    warning: `?every must be a whole number of events from 1, not ${JSON.stringify(given)}: snapshots are taken every ${DEFAULT_SNAPSHOT_EVERY} events instead.`,
  };
}
const { every: SNAPSHOT_EVERY, warning: EVERY_WARNING } = snapshotEvery();

// The reducer. Amounts are whole cents, so sums stay exact.
const initialState = () => ({ balanceCents: 0, entries: [] });

/** A refused command: its message is shown to the user as it is. */
class Refused extends Error {}

const money = (cents) => (cents / 100).toFixed(2);

/** The command: the event recording `kind` of `amount` (text, in units) with `memo` in
 * `category`, or Refused. */
function decide(state, kind, amount, memo, category) {
  const units = Number(amount);
  if (amount.trim() === "" || !Number.isFinite(units)) throw new Refused(`The amount must be a number, not "${amount}".`);
  const cents = Math.round(units * 100);
  if (Math.abs(units * 100 - cents) > 1e-6) throw new Refused(`The amount ${amount} has more than two decimals.`);
  if (cents <= 0) throw new Refused(`The amount must be more than 0.00, not ${money(cents)}: record a withdrawal to take money out.`);
  if (!Number.isSafeInteger(cents)) throw new Refused(`The amount ${amount} is too large.`);
  if (kind === "Withdrawn" && cents > state.balanceCents) {
    throw new Refused(`Insufficient funds: the balance is ${money(state.balanceCents)}, the withdrawal ${money(cents)}.`);
  }
  if (memo.trim() === "") throw new Refused("The memo must not be empty.");
  return { type: kind, data: { cents, memo: memo.trim(), category } };
}

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
/** The ledger's state and version, and the version of its latest snapshot (0: none). */
let ledger = { state: initialState(), version: 0, snapshotVersion: 0 };

/** Shows the ledger, and, after a load, how it was loaded. */
function show(load) {
  $("balance").textContent = money(ledger.state.balanceCents);
  $("version").textContent = ledger.version;
  $("snapshot-version").textContent = ledger.snapshotVersion || "none";
  $("pending").textContent = ledger.version - ledger.snapshotVersion;
  if (load) {
    $("source").textContent = load.source;
    $("replayed").textContent = load.replayed;
    $("load-ms").textContent = load.loadMs.toFixed(1);
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
    ledger = { state, version: loaded.version, snapshotVersion: loaded.snapshot?.version ?? 0 };
    show({
      source: loaded.snapshot
        ? `snapshot at version ${loaded.snapshot.version}`
        : `full replay${loaded.snapshotMiss ? ` (${loaded.snapshotMiss})` : ""}`,
      replayed: loaded.events.length,
      loadMs: performance.now() - started,
    });
  } catch (error) {
    if (error.code !== "NotFound") throw error;
    ledger = { state: initialState(), version: 0, snapshotVersion: 0 };
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
    ledger = { ...ledger, state, version: appended.lastVersion };
    // A snapshot is taken at a stored event: a synced ledger's pending ones are not yet.
    const crossed = Math.floor(appended.lastVersion / SNAPSHOT_EVERY) > Math.floor((appended.firstVersion - 1) / SNAPSHOT_EVERY);
    if (crossed && !appended.pending) {
      const stored = await store.saveSnapshot({
        aggregateType: TYPE, aggregateId: ID, version: ledger.version, schemaVersion: SCHEMA_VERSION, state,
      });
      if (stored) ledger.snapshotVersion = ledger.version;
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

/** Runs `task`, showing its status: a refused command is the user's to correct (its
 * message), anything else a store error (with its code). */
async function run(task) {
  $("status").textContent = "working…";
  $("error").textContent = "";
  $("refused").textContent = "";
  try {
    await task();
    $("status").textContent = "ready";
  } catch (error) {
    if (error instanceof Refused) {
      $("status").textContent = "refused";
      $("refused").textContent = error.message;
      return;
    }
    $("status").textContent = "error";
    $("error").textContent = error.code ? `${error.code}: ${error.message}` : error.message;
  }
}

$("entry").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  const form = submitted.target;
  run(async () => {
    const { amount, memo, category } = form;
    await record([decide(ledger.state, submitted.submitter.value, amount.value, memo.value, category.value)]);
    form.reset();
  });
});

$("bulk").addEventListener("click", () => run(() => record(
  Array.from({ length: 1000 }, (_, i) => ({ type: "Deposited", data: { cents: 1, memo: `bulk ${i + 1}` } })),
)));

// The read model: per category, how many entries and their signed total, as of the
// event at `position`. Every tab folds new events into it and saves it with its
// checkpoint; when another tab saved first, this one takes the saved one and goes on.
const TOTALS = "totals-v1";
let totals = { position: 0, state: {} };

function foldTotals(state, event) {
  if (event.aggregateType !== TYPE) return state;
  const { cents, category = "uncategorized" } = event.data;
  const signed = event.type === "Deposited" ? cents : -cents;
  const before = state[category] ?? { entries: 0, cents: 0 };
  return { ...state, [category]: { entries: before.entries + 1, cents: before.cents + signed } };
}

function showTotals() {
  $("totals-position").textContent = totals.position;
  $("totals").tBodies[0].replaceChildren(
    ...Object.entries(totals.state).sort().map(([category, { entries, cents }]) => {
      const row = document.createElement("tr");
      row.dataset.category = category;
      for (const cell of [category, entries, money(cents)]) {
        row.insertCell().textContent = cell;
      }
      return row;
    }),
  );
}

/** Folds `events` into the totals and saves them with their position, exactly once. */
async function project(events) {
  for (;;) {
    const fresh = events.filter((event) => event.position > totals.position);
    if (fresh.length === 0) return;
    const state = fresh.reduce(foldTotals, totals.state);
    const position = fresh.at(-1).position;
    try {
      await store.saveReadModel(TOTALS, totals.position, position, state);
      totals = { position, state };
      showTotals();
      return;
    } catch (error) {
      if (error.code !== "Conflict") throw error;
      totals = (await store.readModel(TOTALS)) ?? { position: 0, state: {} };
      showTotals();
    }
  }
}

/** Shows the saved totals, then follows the log from their position. */
async function followTotals() {
  const saved = await store.readModel(TOTALS);
  totals = { position: saved?.position ?? 0, state: saved?.state ?? {} };
  showTotals();
  store.subscribe(totals.position + 1, project, {
    onError: (error) => {
      console.error(error);
      $("error").textContent = `${error.code}: ${error.message}`;
    },
  });
}

/** A conflict: the server took versions this tab's pending entries were made on. The
 * commands run again on the server's ledger; one the new state refuses is dropped, said. */
async function rebase(conflict) {
  const loaded = await store.load(TYPE, ID, SCHEMA_VERSION);
  let state = loaded.snapshot ? loaded.snapshot.state : initialState();
  for (const event of loaded.events) if (!event.pending) state = apply(state, event);
  const again = [];
  const dropped = [];
  for (const event of conflict.pending) {
    const { cents, memo, category } = event.data;
    try {
      const next = decide(state, event.type, money(cents), memo, category);
      state = apply(state, { ...next, version: 0 });
      again.push(next);
    } catch (refused) {
      if (!(refused instanceof Refused)) throw refused;
      dropped.push(`${memo}: ${refused.message}`);
    }
  }
  $("conflict").textContent = `Conflict at version ${conflict.version}: another device recorded entries first; ` +
    `${again.length} of yours were recorded again on top of them` +
    (dropped.length ? `, ${dropped.length} refused (${dropped.join("; ")})` : "") + ".";
  return again;
}

/** Shows where the sync stands: online or offline, pending and parked entries. */
function showSync(status) {
  const parts = [status.online === false ? "offline" : status.online ? "online" : "connecting…"];
  parts.push(`${status.pending} pending`);
  if (status.parked) parts.push(`${status.parked} parked`);
  if (status.head > status.pulledUpTo) parts.push(`pulled ${status.pulledUpTo} of ${status.head}`);
  $("sync").textContent = parts.join(" · ");
  $("sync").dataset.online = String(status.online);
  $("sync").dataset.pending = String(status.pending);
  $("sync").dataset.parked = String(status.parked);
}

/** (Re)opens the store and loads the ledger: after another tab wrote, or deleted everything. */
async function reopen() {
  store?.close(); // also ends its subscription
  if (SYNC) {
    const sync = { url: SYNC, token: PARAMS.get("token"), rebase: PARAMS.get("rebase") === "off" ? undefined : rebase };
    store = await EventStore.open(DATABASE, { sync });
    showSync(store.sync.status());
    let seen = "";
    store.sync.onStatus((status) => {
      showSync(status);
      // Pulled events, or pending ones confirmed, rebased or parked: show the new ledger
      // (once caught up: not after each page of an initial sync).
      if (status.pulledUpTo < status.head) return;
      const now = `${status.pulledUpTo}/${status.pending}/${status.parked}`;
      if (now !== seen) {
        seen = now;
        load().catch((error) => {
          $("error").textContent = error.code ? `${error.code}: ${error.message}` : error.message;
        });
      }
    });
  } else {
    store = await EventStore.open(DATABASE);
    $("sync").textContent = "off (this browser only)";
  }
  await load();
  await followTotals();
}

// Deleting the database closes the other tabs' connections (they would reject with
// "Closed"); the message makes them open it again.
$("reset").addEventListener("click", () => run(async () => {
  if (!confirm(`Delete all ${ledger.version} entries of this ledger, in every tab? This cannot be undone.`)) return;
  store.close();
  await EventStore.deleteDatabase(DATABASE);
  await reopen();
  channel.postMessage("reset");
}));

// Another tab recorded entries (its new version), or deleted everything ("reset"). The
// totals need neither: their subscription follows the other tabs' appends by itself.
channel.addEventListener("message", ({ data }) => run(data === "reset" ? reopen : load));

$("every").textContent = SNAPSHOT_EVERY;
$("notice").textContent = EVERY_WARNING ?? "";
run(async () => {
  await init();
  const persisted = await navigator.storage?.persist?.();
  $("storage").textContent = persisted ? "persistent" : "best effort (the browser may evict it)";
  await reopen();
});
