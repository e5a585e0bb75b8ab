use cache_runtime::invalidates;

#[invalidates(keys = ["user:{user_id}"], tags = ["org:{org}"], patterns = ["search:{id}:*", "{self.x}"])]
async fn rename_user(id: u64, name: String) {
    let _ = (id, name);
}

fn main() {}
