use cache_runtime::invalidates;

#[invalidates(keys = ["user:{id}"], when = "never")]
async fn rename_user(id: u64) {
    let _ = id;
}

#[invalidates(keys = ["user:{id}"], when = "afterwards")]
async fn rename_user2(id: u64) {
    let _ = id;
}

fn main() {}
