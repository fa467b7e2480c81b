//! Appends whose callers give up at any await: a gated engine holds every write until the
//! test opens it, futures are polled by hand in a seeded random order, and some are
//! dropped on the way. Whatever is dropped, the store goes on, and nobody else is failed.
//!
//! `EVENTKV_SCHEDULES=N` runs N random schedules (default 3,000); `EVENTKV_SCHEDULE_SEED=S`
//! runs schedule S alone (a failure names its seed).

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use eventkv::testkit::aggregates::AccountEvent;
use eventkv::{
    Appended, Codec, Direction, EventStore, EventStoreError, KeyRange, KvError, KvEventStore,
    KvPage, MemoryKv, NewEvent, OrderedKv, WriteBatch,
};
use uuid::Uuid;

thread_local! {
    /// The future being polled, so that the gate knows whose write waits.
    static POLLING: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Where a write waits: before it is applied, or after (applied, not yet answered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Before,
    After,
}

#[derive(Default)]
struct GateState {
    next: u64,
    /// Writes waiting: (the future that polled it, phase).
    waiting: BTreeMap<u64, (usize, Phase)>,
    opened: HashSet<u64>,
    /// Every write passes at once.
    open_all: bool,
}

/// `MemoryKv` whose writes wait at a gate before they are applied and again after.
#[derive(Default)]
struct Gated {
    inner: MemoryKv,
    gate: Arc<Mutex<GateState>>,
}

impl Gated {
    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.gate.lock().expect("gate")
    }

    fn open_all(&self) {
        self.state().open_all = true;
    }

    /// The writes waiting at the gate, in the order they arrived.
    fn waiting(&self) -> Vec<(u64, usize, Phase)> {
        let state = self.state();
        let waiting = state.waiting.iter();
        waiting
            .map(|(&id, &(owner, phase))| (id, owner, phase))
            .collect()
    }

    fn open(&self, id: u64) {
        let mut state = self.state();
        state.waiting.remove(&id);
        state.opened.insert(id);
    }

    fn pass(&self, phase: Phase) -> Pass {
        Pass {
            gate: Arc::clone(&self.gate),
            phase,
            id: None,
        }
    }
}

/// One write's wait at the gate; dropped (its future was), it leaves the gate.
struct Pass {
    gate: Arc<Mutex<GateState>>,
    phase: Phase,
    id: Option<u64>,
}

impl Future for Pass {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        let gate = Arc::clone(&self.gate);
        let mut state = gate.lock().expect("gate");
        match self.id {
            _ if state.open_all => Poll::Ready(()),
            Some(id) if state.opened.remove(&id) => {
                self.id = None;
                Poll::Ready(())
            }
            Some(_) => Poll::Pending,
            None => {
                let id = state.next;
                state.next += 1;
                state.waiting.insert(id, (POLLING.get(), self.phase));
                self.id = Some(id);
                Poll::Pending
            }
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let mut state = self.gate.lock().expect("gate");
            state.waiting.remove(&id);
            state.opened.remove(&id);
        }
    }
}

impl OrderedKv for Gated {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.inner.get(key).await
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        self.inner.scan(range, direction, limit).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        self.pass(Phase::Before).await;
        self.inner.write(batch).await?;
        self.pass(Phase::After).await;
        Ok(())
    }
}

/// Records whether a future was woken since it was last polled.
#[derive(Default)]
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

type AppendResult = Result<Appended, EventStoreError>;

/// A future polled by hand.
struct Polled<'a, T = AppendResult> {
    future: Pin<Box<dyn Future<Output = T> + 'a>>,
    woken: Arc<Woken>,
    polls: u32,
}

impl<'a, T> Polled<'a, T> {
    fn new(future: Pin<Box<dyn Future<Output = T> + 'a>>) -> Self {
        Polled {
            future,
            woken: Arc::default(),
            polls: 0,
        }
    }

    /// Polls it once, as future `index` of a schedule.
    fn poll(&mut self, index: usize) -> Poll<T> {
        self.polls += 1;
        self.woken.0.store(false, Ordering::SeqCst);
        let waker = Waker::from(Arc::clone(&self.woken));
        POLLING.set(index);
        let polled = self.future.as_mut().poll(&mut Context::from_waker(&waker));
        POLLING.set(usize::MAX);
        polled
    }
}

fn event(id: Uuid, amount: u64) -> NewEvent {
    NewEvent::encode_with_id(
        id,
        "Deposited",
        &AccountEvent::Deposited { amount },
        Codec::Json,
    )
    .expect("encode")
}

/// Polls `polled` until it is ready, at most `bound` times.
fn complete_within<T>(polled: &mut Polled<'_, T>, bound: u32, what: &str) -> T {
    for _ in 0..bound {
        if let Poll::Ready(result) = polled.poll(usize::MAX) {
            return result;
        }
    }
    panic!("{what} did not complete within {bound} polls: the store is stalled");
}

/// The scenario: A leads and writes; B (same stream, the next version) queues; the
/// gate opens, A completes and hands B the lead; B is dropped before it is polled again. A
/// later append on another stream must complete.
#[test]
fn a_follower_dropped_after_it_was_handed_the_lead_stalls_nothing() {
    let kv = Arc::new(Gated::default());
    let store = KvEventStore::new(Arc::clone(&kv));
    let (a, b, c) = (
        [event(Uuid::new_v4(), 1)],
        [event(Uuid::new_v4(), 2)],
        [event(Uuid::new_v4(), 3)],
    );
    let mut first = Polled::new(Box::pin(store.append("Account", "x", 0, &a)));
    let mut second = Polled::new(Box::pin(store.append("Account", "x", 1, &b)));
    assert!(first.poll(0).is_pending(), "A leads, its write at the gate");
    assert!(second.poll(1).is_pending(), "B queues");
    assert_eq!(kv.waiting().len(), 1, "one write: A's, without B");
    kv.open_all();
    let appended = complete_within(&mut first, 10, "A").expect("A appended");
    assert_eq!(appended.last_version, 1);
    assert!(
        second.woken.0.load(Ordering::SeqCst),
        "B was handed the lead"
    );
    drop(second);

    let mut later = Polled::new(Box::pin(store.append("Account", "y", 0, &c)));
    let appended = complete_within(&mut later, 10, "an append after B was dropped")
        .expect("a later append lands");
    assert_eq!(appended.first_position, 2);
    let mut again = Polled::new(Box::pin(store.append("Account", "x", 1, &b)));
    let appended = complete_within(&mut again, 10, "B retried").expect("B's retry lands");
    assert_eq!((appended.first_version, appended.first_position), (2, 3));
}

/// A leader dropped while its batch's write waits at the gate (before it is applied, or
/// after): the appends it carried are written (or found written) by the next leader and
/// answered as usual, never failed.
#[test]
fn a_leader_dropped_mid_write_fails_none_of_the_appends_it_carried() {
    for phase in [Phase::Before, Phase::After] {
        let kv = Arc::new(Gated::default());
        let store = KvEventStore::new(Arc::clone(&kv));
        let events: Vec<[NewEvent; 1]> = (0..4).map(|n| [event(Uuid::new_v4(), n)]).collect();
        let mut first = Polled::new(Box::pin(store.append("Account", "a", 0, &events[0])));
        assert!(first.poll(0).is_pending(), "writing");
        let mut leader = Polled::new(Box::pin(store.append("Account", "b", 0, &events[1])));
        let mut members: Vec<Polled<'_>> = ["c", "d"]
            .iter()
            .zip(&events[2..])
            .map(|(id, events)| Polled::new(Box::pin(store.append("Account", id, 0, events))))
            .collect();
        assert!(leader.poll(1).is_pending(), "queued");
        for (index, member) in members.iter_mut().enumerate() {
            assert!(member.poll(2 + index).is_pending(), "queued");
        }
        let (id, ..) = kv.waiting()[0];
        kv.open(id);
        assert!(first.poll(0).is_pending(), "applied, at the second gate");
        let (id, ..) = kv.waiting()[0];
        kv.open(id);
        assert_eq!(
            first.poll(0).map(|r| r.expect("a").first_position),
            Poll::Ready(1)
        );

        // The leader writes b, c and d in one batch; it is dropped at the gate.
        assert!(leader.poll(1).is_pending(), "the second batch at the gate");
        let (id, owner, _) = kv.waiting()[0];
        assert_eq!(owner, 1, "the leader's write");
        if phase == Phase::After {
            kv.open(id);
            assert!(leader.poll(1).is_pending(), "applied, at the second gate");
        }
        assert_eq!(kv.waiting()[0].2, phase);
        drop(leader);

        kv.open_all();
        let mut positions = Vec::new();
        for (index, member) in members.iter_mut().enumerate() {
            let appended = complete_within(member, 20, "a member of the dropped batch")
                .unwrap_or_else(|e| panic!("{phase:?}: a member was failed: {e}"));
            positions.push(appended.first_position);
            assert_eq!(appended.first_version, 1, "{phase:?}: member {index}");
        }
        // Before: the write never landed, c and d come after a. After: it landed with b
        // first, and the retry finds c and d where that write put them.
        let expected = match phase {
            Phase::Before => [2, 3],
            Phase::After => [3, 4],
        };
        assert_eq!(positions, expected, "{phase:?}");
        let mut later = Polled::new(Box::pin(store.append("Account", "e", 0, &events[0])));
        complete_within(&mut later, 20, "a later append").expect("later append");
    }
}

/// One append of a random schedule: its stream, where its chain of appends to that stream
/// expects it, and its events.
struct Planned {
    stream: String,
    /// The appends before it to the same stream, in order (indexes into the plan).
    chain_before: Vec<usize>,
    expected: u64,
    events: Vec<NewEvent>,
}

/// SplitMix64: small, seeded, repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn plan(seed: u64, rng: &mut Rng) -> Vec<Planned> {
    let streams = 1 + rng.below(4);
    let mut plan: Vec<Planned> = Vec::new();
    let mut ids = 0u64;
    for stream in 0..streams {
        let mut version = 0;
        let mut chain = Vec::new();
        for _ in 0..=rng.below(4) {
            let count = 1 + rng.below(3) as u64;
            let events = (0..count)
                .map(|n| {
                    ids += 1;
                    event(Uuid::from_u64_pair(seed, ids), version + n)
                })
                .collect();
            plan.push(Planned {
                stream: format!("s{stream}"),
                chain_before: chain.clone(),
                expected: version,
                events,
            });
            chain.push(plan.len() - 1);
            version += count;
        }
    }
    plan
}

/// Where a future was when it was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum DroppedAt {
    /// Never polled: before it queued.
    BeforeQueueing,
    /// Queued, waiting for its turn.
    WhileQueued,
    /// Woken and not polled since: handed the lead (or its answer).
    AfterHandOver,
    /// Its batch's write at the gate, before it was applied.
    LeadingBeforeTheWrite,
    /// Its batch's write applied, not yet answered.
    LeadingAfterTheWrite,
}

/// How one planned append ended.
enum Outcome {
    Answered(Result<Appended, EventStoreError>),
    Dropped(DroppedAt),
}

/// Runs schedule `seed`; returns where futures were dropped. Panics (naming the seed) when
/// an invariant breaks.
fn run_schedule(seed: u64) -> Vec<DroppedAt> {
    let mut rng = Rng(seed);
    let plan = plan(seed, &mut rng);
    let drop_percent = [0, 2, 5, 10][rng.below(4)];
    let kv = Arc::new(Gated::default());
    let store = KvEventStore::new(Arc::clone(&kv));
    let mut live: Vec<Option<Polled<'_>>> = plan
        .iter()
        .map(|planned| {
            let future = store.append(
                "Account",
                &planned.stream,
                planned.expected,
                &planned.events,
            );
            Some(Polled::new(Box::pin(future)))
        })
        .collect();
    let mut outcomes: Vec<Option<Outcome>> = plan.iter().map(|_| None).collect();
    let mut steps = 0;
    loop {
        let running: Vec<usize> = (0..live.len()).filter(|&i| live[i].is_some()).collect();
        if running.is_empty() {
            break;
        }
        steps += 1;
        assert!(steps < 100_000, "seed {seed}: the schedule never finished");
        let waiting = kv.waiting();
        let roll = rng.below(100);
        if roll < 25 && !waiting.is_empty() {
            let (id, ..) = waiting[rng.below(waiting.len())];
            kv.open(id);
        } else if rng.chance(drop_percent) {
            let index = running[rng.below(running.len())];
            let polled = live[index].take().expect("running");
            let at = match waiting.iter().find(|&&(_, owner, _)| owner == index) {
                Some((_, _, Phase::Before)) => DroppedAt::LeadingBeforeTheWrite,
                Some((_, _, Phase::After)) => DroppedAt::LeadingAfterTheWrite,
                None if polled.polls == 0 => DroppedAt::BeforeQueueing,
                None if polled.woken.0.load(Ordering::SeqCst) => DroppedAt::AfterHandOver,
                None => DroppedAt::WhileQueued,
            };
            drop(polled);
            outcomes[index] = Some(Outcome::Dropped(at));
        } else {
            // A client sends an append after the one its expected version follows: an
            // append is first polled after the one before it in its chain.
            let ready: Vec<usize> = running
                .iter()
                .copied()
                .filter(|&index| {
                    let before = plan[index].chain_before.last();
                    before.is_none_or(|&before| live[before].as_ref().is_none_or(|p| p.polls > 0))
                })
                .collect();
            let index = ready[rng.below(ready.len())];
            let polled = live[index].as_mut().expect("running");
            if let Poll::Ready(result) = polled.poll(index) {
                live[index] = None;
                outcomes[index] = Some(Outcome::Answered(result));
            }
        }
    }
    drop(live);
    let outcomes: Vec<Outcome> = outcomes
        .into_iter()
        .map(|outcome| outcome.expect("every append answered or dropped"))
        .collect();

    // (a) The store goes on: a new append completes within a bound.
    kv.open_all();
    let later_events = [event(Uuid::from_u64_pair(seed, u64::MAX), 0)];
    let mut later = Polled::new(Box::pin(store.append("Account", "later", 0, &later_events)));
    for _ in 0..50 {
        if let Poll::Ready(result) = later.poll(usize::MAX) {
            result.unwrap_or_else(|e| panic!("seed {seed}: the later append failed: {e}"));
            return check_store(seed, &store, &plan, &outcomes, &later_events);
        }
    }
    panic!("seed {seed}: an append after the schedule did not complete within 50 polls");
}

/// Checks (b) to (e) on what the schedule left; returns where futures were dropped.
fn check_store(
    seed: u64,
    store: &KvEventStore<Arc<Gated>>,
    plan: &[Planned],
    outcomes: &[Outcome],
    later: &[NewEvent],
) -> Vec<DroppedAt> {
    let log = read_log(store);
    // (c) The log is contiguous, with no event id twice.
    let mut where_stored: HashMap<Uuid, (String, u64, u64)> = HashMap::new();
    for (index, (position, stream, version, id)) in log.iter().enumerate() {
        assert_eq!(
            *position,
            index as u64 + 1,
            "seed {seed}: the log has a gap"
        );
        let first = where_stored.insert(*id, (stream.clone(), *version, *position));
        assert!(first.is_none(), "seed {seed}: event {id} stored twice");
    }
    let stored = |planned: &Planned| -> Option<Appended> {
        let places: Vec<_> = planned
            .events
            .iter()
            .map(|event| where_stored.get(&event.event_id))
            .collect();
        if places.iter().all(Option::is_none) {
            return None;
        }
        let places: Vec<_> = places
            .into_iter()
            .map(|place| place.unwrap_or_else(|| panic!("seed {seed}: an append half-stored")))
            .collect();
        for (offset, (stream, version, position)) in places.iter().enumerate() {
            assert_eq!(stream, &planned.stream, "seed {seed}");
            assert_eq!(
                *version,
                planned.expected + 1 + offset as u64,
                "seed {seed}"
            );
            assert_eq!(*position, places[0].2 + offset as u64, "seed {seed}");
        }
        Some(Appended {
            first_version: planned.expected + 1,
            last_version: planned.expected + planned.events.len() as u64,
            first_position: places[0].2,
            last_position: places[places.len() - 1].2,
            duplicate: false,
        })
    };
    let mut dropped = Vec::new();
    let mut accounted = later.len();
    for (index, (planned, outcome)) in plan.iter().zip(outcomes).enumerate() {
        let landed = stored(planned);
        accounted += landed.map_or(0, |_| planned.events.len());
        match outcome {
            // (b), (d): an append answered Ok is stored, once, where it was told.
            Outcome::Answered(Ok(appended)) => {
                let written = Appended {
                    duplicate: false,
                    ..*appended
                };
                assert_eq!(landed, Some(written), "seed {seed}: append {index}");
            }
            // (e) The only error an append that was not dropped may get: a conflict,
            // because an earlier append of its chain was dropped before it landed.
            Outcome::Answered(Err(error)) => {
                let cause = planned.chain_before.iter().any(|&before| {
                    matches!(outcomes[before], Outcome::Dropped(_))
                        && stored(&plan[before]).is_none()
                });
                assert!(
                    matches!(error, EventStoreError::Conflict { .. }) && cause,
                    "seed {seed}: append {index} was failed: {error}"
                );
                assert!(
                    landed.is_none(),
                    "seed {seed}: append {index} failed but landed"
                );
            }
            Outcome::Dropped(at) => dropped.push(*at),
        }
    }
    assert_eq!(
        accounted,
        log.len(),
        "seed {seed}: events in the log that no append wrote"
    );
    dropped
}

/// The whole log: (position, stream, version, event id) of each event.
fn read_log(store: &KvEventStore<Arc<Gated>>) -> Vec<(u64, String, u64, Uuid)> {
    let mut log = Vec::new();
    let mut read = Polled::new(Box::pin(async {
        let mut position = 1;
        loop {
            let page = store.read_all(position, usize::MAX).await?;
            for event in page.iter() {
                log.push((
                    event.position(),
                    event.aggregate_id().to_owned(),
                    event.version(),
                    event.event_id(),
                ));
                position = event.position() + 1;
            }
            if !page.may_have_more() {
                return Ok::<_, EventStoreError>(());
            }
        }
    }));
    complete_within(&mut read, 1000, "reading the log").expect("read the log");
    drop(read);
    log
}

#[test]
fn random_schedules_with_dropped_appends_keep_every_guarantee() {
    let seeds: Vec<u64> = if let Ok(seed) = std::env::var("EVENTKV_SCHEDULE_SEED") {
        vec![seed.parse().expect("EVENTKV_SCHEDULE_SEED is a number")]
    } else {
        let count = std::env::var("EVENTKV_SCHEDULES")
            .map_or(3000, |n| n.parse().expect("EVENTKV_SCHEDULES is a number"));
        (0..count).collect()
    };
    let mut dropped: BTreeMap<DroppedAt, usize> = BTreeMap::new();
    for &seed in &seeds {
        for at in run_schedule(seed) {
            *dropped.entry(at).or_default() += 1;
        }
    }
    println!("{} schedules; futures dropped: {dropped:?}", seeds.len());
    if seeds.len() >= 1000 {
        for at in [
            DroppedAt::BeforeQueueing,
            DroppedAt::WhileQueued,
            DroppedAt::AfterHandOver,
            DroppedAt::LeadingBeforeTheWrite,
            DroppedAt::LeadingAfterTheWrite,
        ] {
            assert!(
                dropped.get(&at).copied().unwrap_or(0) >= 10,
                "the schedules rarely drop a future {at:?}: {dropped:?}"
            );
        }
    }
}
