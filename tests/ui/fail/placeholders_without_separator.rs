use cache_runtime::{cached, invalidates};

// Values are escaped into letters, digits and `%`: between two placeholders
// there must be something else, or `(1, 23)` and `(12, 3)` share a key.
#[cached(key = "order:{a}{b}", ttl = 60)]
async fn adjacent(a: u64, b: u64) -> Option<u64> {
    Some(a + b)
}

#[cached(key = "order:{a}x{b}", ttl = 60, tags = ["t:{a}%{b}"])]
async fn letter_between(a: u64, b: u64) -> Option<u64> {
    Some(a + b)
}

#[invalidates(keys = ["order:{a}-{b}"], patterns = ["order:{a}{b}*"])]
async fn write(a: u64, b: u64) {
    let _ = (a, b);
}

fn main() {}
