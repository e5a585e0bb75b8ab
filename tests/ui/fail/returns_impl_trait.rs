use cache_runtime::cached;

#[cached(key = "name:{id}", ttl = 60)]
async fn name(id: u64) -> impl std::fmt::Display {
    id
}

#[cached(key = "names:{id}", ttl = 60)]
async fn names(id: u64) -> Result<Vec<impl std::fmt::Display>, String> {
    Ok(vec![id])
}

fn main() {}
