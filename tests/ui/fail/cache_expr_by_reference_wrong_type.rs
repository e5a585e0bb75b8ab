use cache_runtime::cached;

struct Repo {
    cache: String,
}

impl Repo {
    // A reference to something that is not a `Cache` is reported as that
    // reference's type.
    #[cached(key = "user:{id}", cache = &self.cache)]
    async fn get_user(&self, id: u64) -> Option<u64> {
        Some(id)
    }
}

fn main() {}
