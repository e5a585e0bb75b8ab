use cache_runtime::invalidates;

#[invalidates(keys = ["user:{id}"])]
async fn rename_user(id: u64) -> impl std::fmt::Debug {
    id
}

fn main() {}
