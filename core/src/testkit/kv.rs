//! The ordered-KV contract: ordering, ranges, paging, atomicity, checks.

use std::ops::Bound;

use bytes::Bytes;

use super::{EngineFactory, fresh, yield_now};
use crate::kv::{Check, Direction, KeyRange, KvError, OrderedKv, WriteBatch};

async fn put(kv: &impl OrderedKv, key: &[u8], value: &[u8]) {
    let mut batch = WriteBatch::new();
    batch.put(key.to_vec(), value.to_vec());
    kv.write(batch).await.expect("put");
}

async fn keys_of(kv: &impl OrderedKv, range: &KeyRange, direction: Direction) -> Vec<Vec<u8>> {
    let entries = kv.scan(range, direction, usize::MAX).await.expect("scan");
    entries.iter().map(|(key, _)| key.to_vec()).collect()
}

/// Every key the ordering cases use, in byte order.
fn ordered_keys() -> Vec<Vec<u8>> {
    vec![
        vec![],
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x00, 0xff],
        vec![0x01],
        b"a".to_vec(),
        b"a\x00".to_vec(),
        b"ab".to_vec(),
        b"b".to_vec(),
        vec![0x7f],
        vec![0x80],
        vec![0xfe, 0xff],
        vec![0xff],
        vec![0xff, 0x00],
        vec![0xff, 0xff, 0xff],
    ]
}

pub async fn get_put_delete<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    assert_eq!(kv.get(b"k").await.expect("get"), None);
    put(&*kv, b"k", b"v1").await;
    assert_eq!(
        kv.get(b"k").await.expect("get").as_deref(),
        Some(&b"v1"[..])
    );
    put(&*kv, b"k", b"v2").await;
    assert_eq!(
        kv.get(b"k").await.expect("get").as_deref(),
        Some(&b"v2"[..])
    );
    let mut batch = WriteBatch::new();
    batch.delete(&b"k"[..]).delete(&b"never-there"[..]);
    kv.write(batch)
        .await
        .expect("deleting a missing key is not an error");
    assert_eq!(kv.get(b"k").await.expect("get"), None);
    kv.write(WriteBatch::new())
        .await
        .expect("an empty batch is fine");
}

pub async fn empty_value_is_present<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    put(&*kv, b"empty", b"").await;
    assert_eq!(
        kv.get(b"empty").await.expect("get").as_deref(),
        Some(&b""[..])
    );
    let mut batch = WriteBatch::new();
    batch
        .check(&b"empty"[..], Check::Present)
        .check(&b"empty"[..], Check::Equals(Bytes::new()));
    kv.write(batch)
        .await
        .expect("an empty value is present and equals empty");
    let mut batch = WriteBatch::new();
    batch.check(&b"empty"[..], Check::Absent);
    assert!(matches!(
        kv.write(batch).await,
        Err(KvError::Conflict { .. })
    ));
}

pub async fn scan_byte_order<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let expected = ordered_keys();
    let mut shuffled = expected.clone();
    shuffled.reverse();
    shuffled.rotate_left(5);
    let mut batch = WriteBatch::new();
    for key in &shuffled {
        batch.put(key.clone(), key.clone());
    }
    kv.write(batch).await.expect("put all");
    assert_eq!(
        keys_of(&*kv, &KeyRange::all(), Direction::Forward).await,
        expected
    );
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(
        keys_of(&*kv, &KeyRange::all(), Direction::Reverse).await,
        reversed
    );
    let entries = kv
        .scan(&KeyRange::all(), Direction::Forward, usize::MAX)
        .await
        .expect("scan");
    assert!(
        entries.iter().all(|(key, value)| key == value),
        "values follow their keys"
    );
}

pub async fn scan_bounds<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let all = ordered_keys();
    let mut batch = WriteBatch::new();
    for key in &all {
        batch.put(key.clone(), b"v".to_vec());
    }
    kv.write(batch).await.expect("put all");
    let bounds = [
        Bound::Unbounded,
        Bound::Included(1),
        Bound::Excluded(1),
        Bound::Included(6),
        Bound::Excluded(14),
    ];
    let to_bound = |bound: &Bound<usize>| match bound {
        Bound::Included(i) => Bound::Included(Bytes::from(all[*i].clone())),
        Bound::Excluded(i) => Bound::Excluded(Bytes::from(all[*i].clone())),
        Bound::Unbounded => Bound::Unbounded,
    };
    for start in &bounds {
        for end in &bounds {
            let range = KeyRange {
                start: to_bound(start),
                end: to_bound(end),
            };
            let expected: Vec<Vec<u8>> = all
                .iter()
                .filter(|key| range.contains(key))
                .cloned()
                .collect();
            assert_eq!(
                keys_of(&*kv, &range, Direction::Forward).await,
                expected,
                "forward {range:?}"
            );
            let mut reversed = expected;
            reversed.reverse();
            assert_eq!(
                keys_of(&*kv, &range, Direction::Reverse).await,
                reversed,
                "reverse {range:?}"
            );
        }
    }
    let prefix = keys_of(&*kv, &KeyRange::prefix(&b"a"[..]), Direction::Forward).await;
    assert_eq!(
        prefix,
        vec![b"a".to_vec(), b"a\x00".to_vec(), b"ab".to_vec()]
    );
    let prefix = keys_of(&*kv, &KeyRange::prefix(vec![0xff]), Direction::Forward).await;
    assert_eq!(
        prefix,
        vec![vec![0xff], vec![0xff, 0x00], vec![0xff, 0xff, 0xff]]
    );
    let inverted = KeyRange::between(&b"b"[..], &b"a"[..]);
    assert!(
        keys_of(&*kv, &inverted, Direction::Forward)
            .await
            .is_empty(),
        "an inverted range is empty"
    );
    let point = KeyRange::between(&b"a"[..], &b"a"[..]);
    assert!(
        keys_of(&*kv, &point, Direction::Reverse).await.is_empty(),
        "[a, a) is empty"
    );
    let single = KeyRange::inclusive(&b"a"[..], &b"a"[..]);
    assert_eq!(
        keys_of(&*kv, &single, Direction::Forward).await,
        vec![b"a".to_vec()]
    );
}

pub async fn scan_paging<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let mut batch = WriteBatch::new();
    for i in 0u32..500 {
        batch.put(i.to_be_bytes().to_vec(), i.to_le_bytes().to_vec());
    }
    kv.write(batch).await.expect("put 500");
    assert!(
        kv.scan(&KeyRange::all(), Direction::Forward, 0)
            .await
            .expect("scan")
            .is_empty()
    );
    for direction in [Direction::Forward, Direction::Reverse] {
        let whole = keys_of(&*kv, &KeyRange::all(), direction).await;
        assert_eq!(whole.len(), 500);
        let mut paged = Vec::new();
        let mut range = KeyRange::all();
        loop {
            let page = kv.scan(&range, direction, 7).await.expect("page");
            assert!(page.len() <= 7, "a page never exceeds its limit");
            paged.extend(page.iter().map(|(key, _)| key.to_vec()));
            match page.last_key() {
                Some(last) if page.len() == 7 => range = range.after_page(last, direction),
                _ => break,
            }
        }
        assert_eq!(
            paged, whole,
            "pages of 7 ({direction:?}) give every key once, in order"
        );
    }
}

pub async fn failed_check_applies_nothing<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    put(&*kv, b"existing", b"old").await;
    let mut batch = WriteBatch::new();
    batch
        .put(&b"new-1"[..], &b"x"[..])
        .put(&b"existing"[..], &b"changed"[..])
        .delete(&b"existing"[..])
        .put(&b"new-2"[..], &b"y"[..])
        .check(&b"new-1"[..], Check::Absent)
        .check(&b"missing"[..], Check::Present)
        .check(
            &b"existing"[..],
            Check::Equals(Bytes::from_static(b"wrong")),
        );
    match kv.write(batch).await {
        Err(KvError::Conflict { key }) => {
            assert_eq!(&key[..], b"missing", "the first failing check is named");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        kv.get(b"existing").await.expect("get").as_deref(),
        Some(&b"old"[..])
    );
    assert_eq!(kv.get(b"new-1").await.expect("get"), None);
    assert_eq!(kv.get(b"new-2").await.expect("get"), None);
}

pub async fn checks<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    put(&*kv, b"k", b"v").await;
    let cases = [
        (b"k".as_slice(), Check::Present, true),
        (b"k", Check::Absent, false),
        (b"k", Check::Equals(Bytes::from_static(b"v")), true),
        (b"k", Check::Equals(Bytes::from_static(b"v2")), false),
        (b"k", Check::Equals(Bytes::from_static(b"")), false),
        (b"none", Check::Absent, true),
        (b"none", Check::Present, false),
        (b"none", Check::Equals(Bytes::from_static(b"v")), false),
    ];
    for (key, check, holds) in cases {
        let mut batch = WriteBatch::new();
        batch
            .check(key.to_vec(), check.clone())
            .put(&b"marker"[..], key.to_vec());
        let result = kv.write(batch).await;
        match (holds, result) {
            (true, Ok(())) => {}
            (false, Err(KvError::Conflict { key: failed })) => assert_eq!(&failed[..], key),
            (holds, result) => {
                panic!("{check:?} on {key:?}: expected holds={holds}, got {result:?}")
            }
        }
    }
    assert_eq!(
        kv.get(b"marker").await.expect("get").as_deref(),
        Some(&b"none"[..])
    );
}

pub async fn batch_order<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let mut batch = WriteBatch::new();
    batch
        .check(&b"a"[..], Check::Absent)
        .put(&b"a"[..], &b"1"[..])
        .put(&b"a"[..], &b"2"[..])
        .put(&b"b"[..], &b"1"[..])
        .delete(&b"b"[..])
        .delete(&b"c"[..])
        .put(&b"c"[..], &b"3"[..]);
    kv.write(batch)
        .await
        .expect("checks see the state before the batch");
    assert_eq!(
        kv.get(b"a").await.expect("get").as_deref(),
        Some(&b"2"[..]),
        "later put wins"
    );
    assert_eq!(kv.get(b"b").await.expect("get"), None, "later delete wins");
    assert_eq!(
        kv.get(b"c").await.expect("get").as_deref(),
        Some(&b"3"[..]),
        "put after delete"
    );
}

pub async fn large_values<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let value: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let key: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    put(&*kv, &key, &value).await;
    assert_eq!(
        kv.get(&key).await.expect("get").as_deref(),
        Some(&value[..])
    );
    let mut batch = WriteBatch::new();
    batch
        .check(key.clone(), Check::Equals(Bytes::from(value.clone())))
        .delete(key.clone());
    kv.write(batch).await.expect("equals on a 1 MiB value");
    assert_eq!(kv.get(&key).await.expect("get"), None);
}

/// Tasks taking turns increment one counter with compare-and-set; none is lost.
pub async fn interleaved_compare_and_set<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let tasks = 8u64;
    let increments = 25u64;
    let task = |kv: std::sync::Arc<F::Kv>| async move {
        let mut conflicts = 0u64;
        for _ in 0..increments {
            loop {
                let current = kv.get(b"counter").await.expect("get");
                yield_now().await;
                let next = current
                    .as_deref()
                    .map_or(0, |v| u64::from_be_bytes(v.try_into().expect("8 bytes")))
                    + 1;
                let mut batch = WriteBatch::new();
                match current {
                    Some(value) => batch.check(&b"counter"[..], Check::Equals(value)),
                    None => batch.check(&b"counter"[..], Check::Absent),
                };
                batch.put(&b"counter"[..], next.to_be_bytes().to_vec());
                match kv.write(batch).await {
                    Ok(()) => break,
                    Err(KvError::Conflict { .. }) => conflicts += 1,
                    Err(other) => panic!("write failed: {other}"),
                }
            }
        }
        conflicts
    };
    let conflicts: u64 = futures_util::future::join_all((0..tasks).map(|_| task(kv.clone())))
        .await
        .into_iter()
        .sum();
    let value = kv
        .get(b"counter")
        .await
        .expect("get")
        .expect("counter exists");
    assert_eq!(
        u64::from_be_bytes(value[..].try_into().expect("8 bytes")),
        tasks * increments
    );
    assert!(conflicts > 0, "interleaved tasks must have conflicted");
}

/// A scan never returns more than a full page, whatever limit it is given: at most
/// `MAX_SCAN_ENTRIES` entries, and it stops with the entry that reaches `MAX_SCAN_BYTES`.
pub async fn scans_are_bounded<F: EngineFactory>(factory: &F) {
    use crate::kv::{MAX_SCAN_BYTES, MAX_SCAN_ENTRIES};
    let kv = fresh(factory).await;
    let count = MAX_SCAN_ENTRIES + 5;
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let mut batch = WriteBatch::new();
        for &i in chunk {
            batch.put(format!("n{i:06}").into_bytes(), b"v".to_vec());
        }
        kv.write(batch).await.expect("write");
    }
    for direction in [Direction::Forward, Direction::Reverse] {
        let range = KeyRange::prefix(&b"n"[..]);
        let page = kv.scan(&range, direction, usize::MAX).await.expect("scan");
        assert_eq!(page.len(), MAX_SCAN_ENTRIES, "{direction:?}");
        assert!(page.is_full() && page.may_have_more(usize::MAX));
        let last = page.last_key().expect("entries").to_vec();
        let rest = kv
            .scan(&range.after_page(&last, direction), direction, usize::MAX)
            .await
            .expect("scan");
        assert_eq!(rest.len(), 5, "{direction:?}");
        assert!(!rest.may_have_more(usize::MAX));
    }

    // Values of a bit more than a third of the byte bound: the page ends with the third.
    let big = vec![7u8; MAX_SCAN_BYTES / 3 + 1];
    for i in 0..4u8 {
        put(&*kv, &[b'v', i], &big).await;
    }
    let range = KeyRange::prefix(&b"v"[..]);
    let page = kv
        .scan(&range, Direction::Forward, 100)
        .await
        .expect("scan");
    assert_eq!(
        page.len(),
        3,
        "stops with the entry that reaches the byte bound"
    );
    assert!(page.may_have_more(100));
    let last = page.last_key().expect("entries").to_vec();
    let rest = kv
        .scan(
            &range.after_page(&last, Direction::Forward),
            Direction::Forward,
            100,
        )
        .await
        .expect("scan");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest.get(0).map(|(_, value)| value.len()), Some(big.len()));
}

fn counter(value: Option<&Bytes>) -> u64 {
    value.map_or(0, |v| {
        u64::from_be_bytes(v[..].try_into().expect("8 bytes"))
    })
}

/// `get_many` answers the keys that have a value, in the order asked (twice when asked
/// twice), with their values; empty keys and values included.
pub async fn get_many_in_order<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let empty = kv.get_many(&[]).await.expect("get_many of nothing");
    assert!(empty.is_empty());
    for key in ordered_keys() {
        let value = [b"v:".as_slice(), &key].concat();
        put(&kv, &key, &value).await;
    }
    put(&kv, b"empty", b"").await;
    let asked: Vec<Bytes> = [
        &b"b"[..],
        b"missing",
        b"",
        b"empty",
        b"\xff\xff\xff",
        b"b",
        b"a\x00",
        b"\xff\xff",
    ]
    .into_iter()
    .map(Bytes::copy_from_slice)
    .collect();
    let page = kv.get_many(&asked).await.expect("get_many");
    let got: Vec<(Vec<u8>, Vec<u8>)> = page
        .iter()
        .map(|(key, value)| (key.to_vec(), value.to_vec()))
        .collect();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = [
        (&b"b"[..], &b"v:b"[..]),
        (b"", b"v:"),
        (b"empty", b""),
        (b"\xff\xff\xff", b"v:\xff\xff\xff"),
        (b"b", b"v:b"),
        (b"a\x00", b"v:a\x00"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_vec(), value.to_vec()))
    .collect();
    assert_eq!(got, expected);
}

/// `write_with` reads, lets the caller build the batch from what it read, and writes it:
/// nothing when the builder declines, nothing when a check of the built batch fails, and
/// no increment lost when tasks taking turns increment one counter with it.
pub async fn write_with_builds_from_what_it_read<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let written = kv
        .write_with(
            vec![Bytes::from_static(b"counter"), Bytes::from_static(b"other")],
            Box::new(|values: &[Option<Bytes>]| {
                assert_eq!(values, [None, None], "nothing stored yet");
                let mut batch = WriteBatch::new();
                batch.put(&b"counter"[..], 1u64.to_be_bytes().to_vec());
                Some(batch)
            }),
        )
        .await
        .expect("write_with");
    assert!(written);
    assert_eq!(counter(kv.get(b"counter").await.expect("get").as_ref()), 1);

    let twice = kv
        .write_with(
            vec![
                Bytes::from_static(b"counter"),
                Bytes::from_static(b"counter"),
            ],
            Box::new(|values: &[Option<Bytes>]| {
                assert_eq!(values[0], values[1], "a key read twice has one value");
                assert_eq!(counter(values[0].as_ref()), 1);
                None
            }),
        )
        .await
        .expect("write_with");
    assert!(!twice);

    let declined = kv
        .write_with(
            vec![Bytes::from_static(b"counter")],
            Box::new(|_: &[Option<Bytes>]| None),
        )
        .await
        .expect("write_with");
    assert!(!declined, "the builder declined: nothing written");

    let refused = kv
        .write_with(
            vec![Bytes::from_static(b"counter")],
            Box::new(|_: &[Option<Bytes>]| {
                let mut batch = WriteBatch::new();
                batch.check(&b"missing"[..], Check::Present);
                batch.put(&b"counter"[..], 99u64.to_be_bytes().to_vec());
                Some(batch)
            }),
        )
        .await;
    assert!(
        matches!(&refused, Err(KvError::Conflict { key }) if &key[..] == b"missing"),
        "{refused:?}"
    );
    assert_eq!(counter(kv.get(b"counter").await.expect("get").as_ref()), 1);

    let increments = |kv: std::sync::Arc<F::Kv>| async move {
        for _ in 0..25 {
            loop {
                yield_now().await;
                let result = kv
                    .write_with(
                        vec![Bytes::from_static(b"counter")],
                        Box::new(|values: &[Option<Bytes>]| {
                            let mut batch = WriteBatch::new();
                            let next = counter(values[0].as_ref()) + 1;
                            batch.put(&b"counter"[..], next.to_be_bytes().to_vec());
                            Some(batch)
                        }),
                    )
                    .await;
                match result {
                    Ok(true) => break,
                    // Engines that read before locking report a concurrent change.
                    Err(KvError::Conflict { key }) if &key[..] == b"counter" => {}
                    other => panic!("write_with failed: {other:?}"),
                }
            }
        }
    };
    futures_util::future::join_all((0..8).map(|_| increments(kv.clone()))).await;
    assert_eq!(
        counter(kv.get(b"counter").await.expect("get").as_ref()),
        1 + 8 * 25,
        "no increment lost"
    );
}

/// `get_many` answers at most a full page, as `scan` does: it ends with the entry that
/// reaches [`MAX_SCAN_BYTES`](crate::kv::MAX_SCAN_BYTES); the caller asks again for the
/// keys after it.
pub async fn get_many_is_bounded<F: EngineFactory>(factory: &F) {
    use crate::kv::MAX_SCAN_BYTES;
    let kv = fresh(factory).await;
    let keys: Vec<Bytes> = (0..7u8).map(|n| Bytes::from(vec![b'k', n])).collect();
    for (n, key) in keys.iter().enumerate() {
        // Key 3 is missing: a gap in what is asked does not end the page.
        if n != 3 {
            put(&kv, key, &vec![n as u8; 1 << 20]).await;
        }
    }
    let mut asked = &keys[..];
    let mut pages = Vec::new();
    while !asked.is_empty() {
        let page = kv.get_many(asked).await.expect("get_many");
        let got: Vec<&[u8]> = page.iter().map(|(key, _)| key).collect();
        let sizes = page.iter().map(|(key, value)| key.len() + value.len());
        let before_last: usize = sizes.take(page.len().saturating_sub(1)).sum();
        assert!(
            before_last < MAX_SCAN_BYTES,
            "the page goes past the entry that fills it"
        );
        for (key, value) in page.iter() {
            assert!(
                value.iter().all(|&b| b == key[1]),
                "each key with its own value"
            );
        }
        let Some(last) = got.last() else {
            break;
        };
        let at = asked
            .iter()
            .position(|key| &key[..] == *last)
            .expect("an asked key");
        pages.push(got.iter().map(|key| key[1]).collect::<Vec<u8>>());
        if !page.is_full() {
            assert_eq!(
                at + 1,
                asked.len(),
                "a page that is not full answers every key"
            );
            break;
        }
        asked = &asked[at + 1..];
    }
    assert_eq!(pages, [vec![0, 1, 2, 4], vec![5, 6]]);
}
