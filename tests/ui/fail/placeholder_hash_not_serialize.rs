use cache_runtime::cached;

struct Filter {
    words: Vec<String>,
}

#[cached(key = "search:{filter:hash}", ttl = 60)]
async fn search(filter: Filter) -> Vec<String> {
    filter.words
}

fn main() {}
