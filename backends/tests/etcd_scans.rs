//! Reverse scans on etcd, which the engine answers by probing the key space (etcd would
//! sort the whole range): on dense, sparse, long-prefixed and nested keys, every reverse
//! page equals the forward order reversed, page by page, whatever the limit.
#![cfg(feature = "etcd")]

mod common;

use bytes::Bytes;
use eventkv::{Direction, KeyRange, OrderedKv, WriteBatch};

/// Keys of several shapes: dense numbers, random bytes of random lengths, numbers behind a
/// prefix longer than the probes' 16 bytes, and keys that are prefixes of each other.
fn keys() -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    keys.extend((0..2000u64).map(|n| [&b"d"[..], &n.to_be_bytes()].concat()));
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 33) as u8
    };
    for _ in 0..500 {
        let length = 1 + usize::from(next()) % 40;
        let mut key = vec![b's'];
        key.extend((0..length).map(|_| next()));
        keys.push(key);
    }
    let long = [&b"p"[..], &[b'x'; 20]].concat();
    keys.extend((0..300u32).map(|n| [&long[..], &n.to_be_bytes()].concat()));
    keys.extend((1..200).map(|n| [&b"v"[..], &vec![b'a'; n]].concat()));
    keys.sort();
    keys.dedup();
    keys
}

async fn all_pages(
    kv: &impl OrderedKv,
    range: &KeyRange,
    direction: Direction,
    limit: usize,
) -> Vec<Vec<u8>> {
    let mut range = range.clone();
    let mut found = Vec::new();
    loop {
        let page = kv.scan(&range, direction, limit).await.expect("scan");
        found.extend(page.iter().map(|(key, _)| key.to_vec()));
        match page.last_key() {
            Some(last) if page.may_have_more(limit) => range = range.after_page(last, direction),
            _ => return found,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_scans_equal_forward_scans_reversed() {
    let Some(factory) = common::ScratchFactory::new("etcd", module_path!()).await else {
        return;
    };
    let kv = eventkv::testkit::EngineFactory::create(&factory).await;
    let keys = keys();
    for chunk in keys.chunks(100) {
        let mut batch = WriteBatch::new();
        for key in chunk {
            batch.put(Bytes::from(key.clone()), Bytes::from(key.len().to_string()));
        }
        kv.write(batch).await.expect("write");
    }
    let ranges = [
        KeyRange::all(),
        KeyRange::prefix(&b"d"[..]),
        KeyRange::prefix(&b"s"[..]),
        KeyRange::prefix(&b"p"[..]),
        KeyRange::prefix(&b"v"[..]),
        KeyRange::inclusive(&b"d\0\0\0\0\0\0\x01\0"[..], &b"s\x80"[..]),
        KeyRange::between(&b"va"[..], &b"vaaaaa"[..]),
        KeyRange::between(&b"q"[..], &b"r"[..]),
    ];
    for range in &ranges {
        let forward = all_pages(&kv, range, Direction::Forward, usize::MAX).await;
        let expected: Vec<Vec<u8>> = forward.iter().rev().cloned().collect();
        for limit in [1, 7, 500, usize::MAX] {
            if limit < 10 && expected.len() > 600 {
                // A few keys per call: the first page is enough to check.
                let page = kv
                    .scan(range, Direction::Reverse, limit)
                    .await
                    .expect("scan");
                let first: Vec<Vec<u8>> = page.iter().map(|(key, _)| key.to_vec()).collect();
                assert_eq!(first, expected[..limit].to_vec(), "{range:?}");
                continue;
            }
            let reverse = all_pages(&kv, range, Direction::Reverse, limit).await;
            assert_eq!(reverse.len(), expected.len(), "{range:?}, limit {limit}");
            let first_difference = reverse.iter().zip(&expected).position(|(a, b)| a != b);
            assert_eq!(first_difference, None, "{range:?}, limit {limit}");
        }
    }
    let page = kv
        .scan(&KeyRange::all(), Direction::Reverse, 3)
        .await
        .expect("scan");
    let values: Vec<Bytes> = page
        .iter()
        .map(|(_, value)| Bytes::copy_from_slice(value))
        .collect();
    let lengths: Vec<Bytes> = keys
        .iter()
        .rev()
        .take(3)
        .map(|key| Bytes::from(key.len().to_string()))
        .collect();
    assert_eq!(values, lengths, "values come with their keys");
}

/// Stores whose prefixes extend each other (`P`, `P2`, `P/x`) share a cluster without
/// seeing each other's keys, and removing one leaves the others whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_that_extend_each_other_stay_apart() {
    let Some(factory) = common::ScratchFactory::new("etcd", module_path!()).await else {
        return;
    };
    let base = factory.url();
    let (address, query) = base.split_once('?').unwrap_or((&base, ""));
    let urls: Vec<String> = ["", "2", "/x"]
        .iter()
        .map(|suffix| format!("{address}{suffix}?{query}"))
        .collect();
    let mut stores = Vec::new();
    for (n, url) in urls.iter().enumerate() {
        let kv = eventkv_backends::open(url).await.expect("open");
        let mut batch = WriteBatch::new();
        for key in [&b""[..], b"\0", b"a", b"\xff\xff"] {
            batch.put(Bytes::copy_from_slice(key), Bytes::from(n.to_string()));
        }
        kv.write(batch).await.expect("write");
        stores.push(kv);
    }
    for (n, kv) in stores.iter().enumerate() {
        for direction in [Direction::Forward, Direction::Reverse] {
            let page = kv
                .scan(&KeyRange::all(), direction, 100)
                .await
                .expect("scan");
            assert_eq!(page.len(), 4, "store {n} sees its own keys only");
            assert!(
                page.iter()
                    .all(|(_, value)| value == n.to_string().as_bytes())
            );
        }
    }
    eventkv_backends::destroy(&urls[0]).await.expect("destroy");
    let page = stores[2]
        .scan(&KeyRange::all(), Direction::Forward, 100)
        .await
        .expect("scan");
    assert_eq!(page.len(), 4, "removing P leaves P/x whole");
    for url in &urls[1..] {
        eventkv_backends::destroy(url).await.expect("destroy");
    }
}
