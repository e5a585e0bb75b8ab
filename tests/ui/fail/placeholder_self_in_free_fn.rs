use cache_runtime::cached;

#[cached(key = "{self.tenant}:user:{id}", ttl = 60)]
async fn get_user(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
