use cache_runtime::{cached, invalidates};

#[cached(key = "user:{id}", ttl = 60)]
fn get_user(id: u64) -> Option<u64> {
    Some(id)
}

#[invalidates(keys = ["user:{id}"])]
fn rename_user(id: u64) {
    let _ = id;
}

fn main() {
    let _ = get_user(1);
    rename_user(1);
}
