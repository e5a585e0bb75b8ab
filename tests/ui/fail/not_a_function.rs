use cache_runtime::cached;

#[cached(key = "user")]
struct User {
    id: u64,
}

fn main() {}
