//! Generic functions and methods, with bounds in `where` clauses and
//! lifetimes.
#![deny(warnings)]
#![deny(clippy::all)]

use std::fmt::Display;
use std::marker::PhantomData;

use cache_runtime::{cached, invalidates};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[cached(key = "echo:{id}", ttl = 60)]
async fn echo<T>(id: u32, value: T) -> Option<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    let _ = id;
    Some(value)
}

#[cached(key = "show:{item}", ttl = 60)]
async fn show<'a, D: Display + ?Sized>(item: &'a D) -> String {
    item.to_string()
}

#[cached(ttl = 60)]
async fn hashed_default<K: Serialize + Sync>(keys: Vec<K>) -> usize {
    keys.len()
}

struct Store<T> {
    name: String,
    marker: PhantomData<T>,
}

impl<T: Serialize + DeserializeOwned + Default + Send + Sync + 'static> Store<T> {
    #[cached(key = "{self.name}:{id}", ttl = 60)]
    async fn load(&self, id: u64) -> Result<T, String> {
        let _ = id;
        Ok(T::default())
    }

    #[invalidates(keys = ["{self.name}:{id}"])]
    async fn save(&self, id: u64, value: T) -> Result<(), String> {
        let _ = (id, value);
        Ok(())
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(echo(1, "x".to_string()).await.as_deref(), Some("x"));
        assert_eq!(show("abc").await, "abc");
        assert_eq!(show(&5).await, "5");
        assert_eq!(hashed_default(vec!["a", "b"]).await, 2);
        let store: Store<Vec<u8>> = Store {
            name: "bytes".to_string(),
            marker: PhantomData,
        };
        assert!(store.load(1).await.unwrap().is_empty());
        store.save(1, vec![1]).await.unwrap();
    });
}
