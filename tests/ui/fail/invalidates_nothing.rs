use cache_runtime::invalidates;

#[invalidates]
async fn rename_user(id: u64) {
    let _ = id;
}

#[invalidates(when = "before", keys = [])]
async fn rename_user2(id: u64) {
    let _ = id;
}

fn main() {}
