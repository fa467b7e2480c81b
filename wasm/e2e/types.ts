// Compile-only check of the package's TypeScript types (`tsc -p .`, part of `npm test`):
// every call and shape is typed, and the `@ts-expect-error` lines prove that wrong uses
// are refused, so the types are not `any`.
import init, {
  EventStore,
  Sync,
  type Conflict,
  type OutboxEntry,
  type SyncStatus,
  type Appended,
  type ErrorCode,
  type EventKvError,
  type Loaded,
  type NewEvent,
  type NewSnapshot,
  type OnEvents,
  type OpenOptions,
  type ReadEvent,
  type ReadModelState,
  type Snapshot,
  type SnapshotMiss,
  type StoredEvent,
  type SubscribeOptions,
} from "../pkg/eventkv_wasm.js";

type Counter = { total: number };

function isEventKvError(error: unknown): error is EventKvError {
  return error instanceof Error && error.name === "EventKvError";
}

export async function everyCall(): Promise<Counter> {
  await init();
  const store: EventStore = await EventStore.open("typed");
  const options: OpenOptions = { durability: "relaxed" };
  (await EventStore.open("typed-relaxed", options)).close();
  const name: string = store.name;
  const events: NewEvent[] = [{ type: "Added", data: { n: 1 }, correlationId: null }];
  let appended: Appended;
  try {
    appended = await store.append("Counter", name, 0, events);
  } catch (error) {
    if (isEventKvError(error) && error.code === "Conflict") {
      const behind: number | undefined = error.actual;
      throw new Error(`conflict at ${behind}`);
    }
    throw error;
  }
  const stream: ReadEvent[] = await store.readStream("Counter", name, appended.firstVersion, 10);
  const first = stream[0];
  const all: StoredEvent[] = await store.readAll(first && !("pending" in first) ? first.position : undefined);
  const version: number = await store.currentVersion("Counter", name);
  const snapshot: NewSnapshot = {
    aggregateType: "Counter", aggregateId: name, version, schemaVersion: 1, state: { total: all.length },
  };
  const stored: boolean = await store.saveSnapshot(snapshot);
  const read: Snapshot | null = await store.getSnapshot("Counter", name);
  const createdAt: number | undefined = read?.createdAt;
  const loaded: Loaded = await store.load("Counter", name, 1);
  const miss: SnapshotMiss | null = loaded.snapshotMiss;
  let state = (loaded.snapshot?.state as Counter | undefined) ?? { total: 0 };
  for (const event of loaded.events) state = { total: state.total + (event.data as { n: number }).n };
  const deleted: boolean = await store.deleteSnapshot("Counter", name);
  const removed: number = await store.deleteSnapshots("Counter", 2);
  const code: ErrorCode = "StorageFull";
  const onEvents: OnEvents = async (batch: StoredEvent[]) => {
    const last: number | undefined = batch.at(-1)?.position;
    if (last !== undefined) await store.saveCheckpoint("typed-reader", last);
  };
  const subscribeOptions: SubscribeOptions = {
    aggregateType: "Counter",
    onError: (error: EventKvError) => console.warn(error.code),
  };
  const unsubscribe: () => void = store.subscribe(1, onEvents, subscribeOptions);
  unsubscribe();
  const checkpoint: number = await store.checkpoint("typed-reader");
  const model: ReadModelState | null = await store.readModel("typed-totals");
  await store.saveReadModel("typed-totals", model?.position ?? 0, checkpoint, { total: state.total });
  store.close();
  await EventStore.deleteDatabase(name);
  console.log(stored, createdAt, miss, deleted, removed, code);

  // @ts-expect-error an event needs a type
  await store.append("Counter", name, 0, [{ data: 1 }]);
  // @ts-expect-error versions are numbers
  await store.append("Counter", name, "0", events);
  // @ts-expect-error load needs the state's schema version
  await store.load("Counter", name);
  // @ts-expect-error not a durability
  await EventStore.open("typed", { durability: "eventual" });
  // @ts-expect-error not an error code
  const wrong: ErrorCode = "Oops";
  // @ts-expect-error onEvents is a function
  store.subscribe(1, "handler");
  // @ts-expect-error a read model is saved from a position
  await store.saveReadModel("typed-totals", checkpoint, { total: 1 });
  // @ts-expect-error a snapshot needs its schema version
  await store.saveSnapshot({ aggregateType: "Counter", aggregateId: name, version: 1, state: {} });
  console.log(wrong);
  return state;
}

export async function synced(): Promise<number> {
  const rebase = (conflict: Conflict): NewEvent[] | null =>
    conflict.serverEvents.length > 0 ? conflict.pending.map((e) => ({ type: e.type, data: e.data })) : null;
  const options: OpenOptions = { sync: { url: "http://127.0.0.1:7411", token: null, rebase } };
  const store = await EventStore.open("typed-synced", options);
  const sync: Sync | undefined = store.sync;
  if (!sync) return 0;
  const status: SyncStatus = sync.status();
  const online: boolean | null = status.online;
  const off: () => void = sync.onStatus((next: SyncStatus) => void next.pending);
  const outbox: OutboxEntry[] = await sync.outbox();
  const parked = outbox.filter((entry) => entry.state === "parked");
  const discarded: boolean = await sync.discard(parked[0]?.seq ?? 0);
  const appended: Appended = await store.append("Counter", "c", 0, [{ type: "Added", data: 1 }]);
  const position: number | null = appended.firstPosition;
  sync.syncNow();
  sync.stop();
  off();
  // @ts-expect-error a rebase returns events or null
  const wrong: OpenOptions = { sync: { url: "http://x", rebase: () => 1 } };
  return (online ? 1 : 0) + (discarded ? 1 : 0) + (position ?? 0) + (wrong ? 0 : 1);
}
