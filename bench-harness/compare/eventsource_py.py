#!/usr/bin/env python3
"""The eventkv benchmark workload on eventsource-py 0.15.1, for a side-by-side table.

An Account aggregate (opened, then deposits) of N events, saved 100 events at a time, is
loaded repeatedly without snapshots, with a snapshot every 100 events, and with the last
snapshot 99 events behind, on the in-memory and SQLite stores. Prints JSON on stdout:

    {"library": "eventsource-py", "version": ..., "python": ...,
     "results": [{"engine": "memory"|"sqlite", "events": N,
                  "without_ms": {"median", "min", "max"}, "with_ms": {...},
                  "behind_ms": {...}}]}

Needs Python >= 3.13 and `pip install 'eventsource-py[sqlite]==0.15.1'`. Where either is
missing it says so on stderr and exits with status 3 (the harness reports it as skipped).
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from uuid import uuid4

SKIPPED = 3

if sys.version_info < (3, 13):
    print(f"eventsource-py comparison skipped: Python >= 3.13 needed, this is {sys.version.split()[0]}", file=sys.stderr)
    sys.exit(SKIPPED)
try:
    from importlib.metadata import version as package_version

    from pydantic import BaseModel

    from eventsource import (
        AggregateRepository,
        DeclarativeAggregate,
        DomainEvent,
        InMemoryEventStore,
        InMemorySnapshotStore,
        SQLiteEventStore,
        handles,
        register_event,
    )
    from eventsource.adapters.sqlite.snapshots import SQLiteSnapshotStore
except ImportError as error:
    print(
        f"eventsource-py comparison skipped: {error}; install with "
        "pip install 'eventsource-py[sqlite]==0.15.1'",
        file=sys.stderr,
    )
    sys.exit(SKIPPED)


class AccountState(BaseModel):
    owner: str = ""
    balance: int = 0
    transactions: int = 0


class AccountOpened(DomainEvent):
    event_type: str = "AccountOpened"
    aggregate_type: str = "Account"
    owner: str


class MoneyDeposited(DomainEvent):
    event_type: str = "MoneyDeposited"
    aggregate_type: str = "Account"
    amount: int


register_event(AccountOpened)
register_event(MoneyDeposited)


class Account(DeclarativeAggregate[AccountState]):
    aggregate_type = "Account"
    schema_version = 1

    def _get_initial_state(self) -> AccountState:
        return AccountState()

    def open(self, owner: str) -> None:
        self.create_event(AccountOpened, owner=owner)

    def deposit(self, amount: int) -> None:
        self.create_event(MoneyDeposited, amount=amount)

    @handles(AccountOpened)
    def _on_opened(self, event: AccountOpened) -> None:
        state = self._state or self._get_initial_state()
        self._state = state.model_copy(update={"owner": event.owner})

    @handles(MoneyDeposited)
    def _on_deposited(self, event: MoneyDeposited) -> None:
        state = self._state or self._get_initial_state()
        self._state = state.model_copy(
            update={"balance": state.balance + event.amount, "transactions": state.transactions + 1}
        )


def loads_for(events: int, quick: bool) -> int:
    if quick:
        return 3
    return max(5, min(50, 200_000 // events))


async def seed(repo: AggregateRepository, events: int):
    account_id = uuid4()
    account = repo.create_new(account_id)
    account.open("bench")
    for i in range(1, events):
        account.deposit(i % 100)
        if len(account.uncommitted_events) == 100:
            await repo.save(account)
    await repo.save(account)
    return account_id


async def timed_loads(repo: AggregateRepository, account_id, loads: int) -> dict:
    await repo.load(account_id)  # warm-up
    samples = []
    for _ in range(loads):
        start = time.perf_counter()
        await repo.load(account_id)
        samples.append((time.perf_counter() - start) * 1000)
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


async def run_case(engine: str, events: int, quick: bool, workdir: str) -> dict:
    result = {"engine": engine, "events": events}
    # The third case keeps 99 events after the last snapshot (at the last multiple of 100).
    for label, threshold, extra in (("without_ms", None, 0), ("with_ms", 100, 0), ("behind_ms", 100, 99)):
        if engine == "memory":
            store, snapshots = InMemoryEventStore(), InMemorySnapshotStore()
        else:
            path = os.path.join(workdir, f"{events}-{label}.db")
            store, snapshots = SQLiteEventStore(path), SQLiteSnapshotStore(path + ".snapshots")
        repo = AggregateRepository(
            event_store=store,
            aggregate_factory=Account,
            snapshot_store=snapshots if threshold else None,
            snapshot_threshold=threshold,
            snapshot_mode="sync",
        )
        account_id = await seed(repo, events + extra)
        result[label] = await timed_loads(repo, account_id, loads_for(events, quick))
        for closable in (store, snapshots):
            close = getattr(closable, "close", None)
            if close is not None:
                await close()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="100,1000,10000,100000")
    parser.add_argument("--engines", default="memory,sqlite")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    events = [int(n) for n in args.events.split(",")]
    engines = args.engines.split(",")
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for engine in engines:
            for count in events:
                print(f"eventsource-py {engine} {count} events", file=sys.stderr)
                results.append(await run_case(engine, count, args.quick, workdir))
    report = {
        "library": "eventsource-py",
        "version": package_version("eventsource-py"),
        "python": sys.version.split()[0],
        "results": results,
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    asyncio.run(main())
