//! Every syntax error of a template is reported, in keys and in tags.
use cache_runtime::cached;

#[cached(key = "user:{}:{id}}", ttl = 60, tags = ["users:{id.}", "{ id }"])]
async fn get_user(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
