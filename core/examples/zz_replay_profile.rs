use std::sync::Arc;
use eventkv::testkit::aggregates::{Account, AccountEvent};
use eventkv::*;
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let kv = Arc::new(MemoryKv::new());
    let repo: Repository<Account, _, _> = Repository::new(KvEventStore::new(kv.clone()), KvSnapshotStore::new(kv.clone()));
    let mut account = repo.create_new("acc");
    for i in 0..100_000u64 {
        account.record(AccountEvent::Deposited { amount: i % 100 });
        if account.pending().len() == 1000 { repo.save(&mut account).await.unwrap(); }
    }
    let n: u32 = std::env::args().nth(1).map_or(30, |a| a.parse().unwrap());
    let t = std::time::Instant::now();
    for _ in 0..n {
        let mut range = KeyRange::all();
        loop { let p = kv.scan(&range, Direction::Forward, 256).await.unwrap(); if p.len() < 256 { break } range = range.after_page(p.last_key().unwrap(), Direction::Forward); std::hint::black_box(p); }
    }
    println!("raw scan (incl. log): {:?}", t.elapsed() / n);
    let es = repo.event_store();
    let t = std::time::Instant::now();
    for _ in 0..n {
        let mut next = 1;
        loop { let p = es.read_stream("Account", "acc", next, u64::MAX, 256).await.unwrap(); if p.len() < 256 { break } next = p.last().unwrap().version() + 1; std::hint::black_box(p); }
    }
    println!("read_stream: {:?}", t.elapsed() / n);
    let t = std::time::Instant::now();
    for _ in 0..n {
        let mut next = 1;
        loop { let p = es.read_stream("Account", "acc", next, u64::MAX, 256).await.unwrap(); 
          for e in p.iter() { std::hint::black_box(e.decode::<AccountEvent>().unwrap()); }
          if p.len() < 256 { break } next = p.last().unwrap().version() + 1; }
    }
    println!("read_stream+decode: {:?}", t.elapsed() / n);
    let t = std::time::Instant::now();
    for _ in 0..n { std::hint::black_box(repo.load("acc").await.unwrap()); }
    println!("load: {:?}", t.elapsed() / n);
    let payload = br#"{"Deposited":{"amount":42}}"#;
    let t = std::time::Instant::now();
    for _ in 0..100_000 { std::hint::black_box(serde_json::from_slice::<AccountEvent>(std::hint::black_box(payload)).unwrap()); }
    println!("100k json decodes: {:?}", t.elapsed());
}
