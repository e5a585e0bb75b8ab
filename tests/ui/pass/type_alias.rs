//! A crate-local `Result` alias as the return type.
#![deny(warnings)]
#![deny(clippy::all)]

use cache_runtime::cached;

#[derive(Debug)]
pub struct MyErr;

type Result<T> = std::result::Result<T, MyErr>;

#[cached(key = "len:{text}", ttl = 60)]
async fn len(text: &str) -> Result<usize> {
    if text.is_empty() {
        return Err(MyErr);
    }
    Ok(text.len())
}

#[cached(key = "maybe:{n}", ttl = 60)]
async fn maybe(n: u32) -> Result<Option<u32>> {
    Ok((n > 0).then_some(n))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(len("abc").await.unwrap(), 3);
        assert!(len("").await.is_err());
        assert_eq!(maybe(2).await.unwrap(), Some(2));
    });
}
