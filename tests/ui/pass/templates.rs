//! Template forms: `{arg}`, `{arg.field.sub}`, `{arg.0}`, `{arg:hash}`,
//! `{arg.field:hash}`, doubled braces, and raw identifiers; and keys that
//! really differ when the arguments differ.
#![deny(warnings)]
#![deny(clippy::all)]

use std::sync::atomic::{AtomicUsize, Ordering};

use cache_runtime::{Cache, cached};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Address {
    city: String,
}

#[derive(Serialize, Deserialize)]
struct Filter {
    owner: u64,
    address: Address,
    words: Vec<String>,
}

static LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(
    key = "search:{filter.owner}:{filter.address.city}:{filter:hash}",
    ttl = "10m"
)]
async fn search(filter: &Filter) -> Vec<String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    filter.words.clone()
}

#[cached(key = "pair:{pair.0}/{pair.1:hash}", ttl = 60)]
async fn pair(pair: (u32, String)) -> String {
    format!("{}{}", pair.0, pair.1)
}

#[cached(key = "{{literal}}:{r#type}", ttl = 60)]
async fn raw(r#type: u8) -> u8 {
    r#type
}

#[cached(key = "colon:{a}:{b}", ttl = 60)]
async fn colon(a: &str, b: &str) -> String {
    LOADS.fetch_add(1, Ordering::Relaxed);
    format!("{a}|{b}")
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        Cache::builder()
            .memory()
            .build()
            .await
            .unwrap()
            .install()
            .unwrap();
        let filter = |words: &[&str]| Filter {
            owner: 1,
            address: Address {
                city: "Paris".to_string(),
            },
            words: words.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(search(&filter(&["a"])).await, ["a"]);
        assert_eq!(search(&filter(&["a"])).await, ["a"]);
        assert_eq!(search(&filter(&["b"])).await, ["b"]);
        assert_eq!(
            LOADS.load(Ordering::Relaxed),
            2,
            "the hash tells the filters apart"
        );

        assert_eq!(pair((1, "x".to_string())).await, "1x");
        assert_eq!(raw(3).await, 3);

        // "a:b" + "c" and "a" + "b:c" must not share a key.
        assert_eq!(colon("a:b", "c").await, "a:b|c");
        assert_eq!(colon("a", "b:c").await, "a|b:c");
        assert_eq!(LOADS.load(Ordering::Relaxed), 4);
    });
}
