use cache_runtime::cached;

#[cached(key = "touch:{id}", ttl = 60)]
async fn touch(id: u64) {
    let _ = id;
}

#[cached(key = "touch2:{id}", ttl = 60)]
async fn touch2(id: u64) -> () {
    let _ = id;
}

fn main() {}
