use std::marker::PhantomData;

use cache_runtime::cached;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Session {
    id: u64,
    #[serde(skip)]
    thread_bound: PhantomData<*const ()>,
}

#[cached(key = "session:{id}", ttl = 60)]
async fn session(id: u64) -> Option<Session> {
    Some(Session {
        id,
        thread_bound: PhantomData,
    })
}

fn main() {}
