//! One build reports every mistake, and the function stays usable.
use cache_runtime::cached;

#[cached(
    key = "user:{idd}",
    ttl = 0,
    jitter = 2,
    codec = "cbor",
    lock = 1,
    bogus = 1
)]
fn get_user(id: u64) -> &'static str {
    let _ = id;
    "user"
}

fn main() {
    // The function is emitted as written: this call type-checks.
    let _: &'static str = get_user(1);
}
