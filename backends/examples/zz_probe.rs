use eventkv::*;
use eventkv_backends::*;
#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbKv::open(&dir.path().join("x.redb"), RedbDurability::Immediate).await.unwrap();
    let mut b = WriteBatch::new(); b.put(&b"k"[..], &b"v"[..]); kv.write(b).await.unwrap();
    let t = std::time::Instant::now();
    for _ in 0..2000u64 { kv.get(b"k").await.unwrap(); }
    println!("redb get: {:?}", t.elapsed() / 2000);
}
