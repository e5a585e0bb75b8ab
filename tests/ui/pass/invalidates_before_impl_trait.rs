//! `when = "before"` keeps the body as written, so any return type works,
//! `impl Trait` and references included.
#![deny(warnings)]
#![deny(clippy::all)]

use cache_runtime::invalidates;

#[invalidates(keys = ["user:{id}"], when = "before")]
async fn rename_user(id: u64) -> impl std::fmt::Debug {
    id
}

#[invalidates(tags = ["names"], when = "both")]
async fn first_word(text: &str) -> &str {
    text.split(' ').next().unwrap_or_default()
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(format!("{:?}", rename_user(1).await), "1");
        assert_eq!(first_word("a b").await, "a");
    });
}
