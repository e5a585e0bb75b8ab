use cache_runtime::cached;

struct Filter {
    words: Vec<String>,
}

// The default key hashes every argument.
#[cached(ttl = 60)]
async fn search(page: u32, filter: Filter) -> Vec<String> {
    let _ = page;
    filter.words
}

fn main() {}
