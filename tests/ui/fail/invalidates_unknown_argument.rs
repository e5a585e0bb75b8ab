use cache_runtime::invalidates;

#[invalidates(key = ["user:{id}"], ttl = 60)]
async fn rename_user(id: u64) {
    let _ = id;
}

fn main() {}
