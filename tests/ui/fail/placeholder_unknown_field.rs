use cache_runtime::cached;

struct User {
    id: u64,
}

#[cached(key = "user:{user.nofield}", ttl = 60)]
async fn get_user(user: User) -> Option<u64> {
    Some(user.id)
}

fn main() {}
