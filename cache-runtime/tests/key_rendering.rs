//! Keys the macro renders are the keys `KeyWriter::display` renders: integer
//! placeholders (written without `fmt`), references to integers, and other
//! `Display` values (escaped) side by side.

use std::convert::Infallible;
use std::sync::OnceLock;

use cache_runtime::key::KeyWriter;
use cache_runtime::{Cache, cached};

static CACHE: OnceLock<Cache> = OnceLock::new();

fn cache() -> &'static Cache {
    CACHE.get().expect("built first")
}

#[cached(key = "k:{a}:{b}:{c}:{d}:{e}", ttl = 60, cache = cache())]
async fn mixed(a: i64, b: &u32, c: &str, d: u128, e: i8) -> Result<u64, Infallible> {
    Ok(7)
}

#[tokio::test]
async fn integer_placeholders_render_as_display_does() {
    let built = Cache::builder().memory().build().await.expect("cache");
    CACHE.set(built).ok();
    let (a, b, c, d, e) = (-42i64, 7u32, "x:{y}", u128::MAX, i8::MIN);
    assert_eq!(mixed(a, &b, c, d, e).await, Ok(7));
    let mut w = KeyWriter::new();
    w.lit("k:")
        .display(&a)
        .lit(":")
        .display(&b)
        .lit(":")
        .display(c);
    w.lit(":").display(&d).lit(":").display(&e);
    let key = w.finish();
    assert_eq!(key, format!("k:%2D42:7:x%3A%7By%7D:{}:%2D128", u128::MAX));
    assert_eq!(cache().get::<u64>(&key).await.expect("read"), Some(7));
}
