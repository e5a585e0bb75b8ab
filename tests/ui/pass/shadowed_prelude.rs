//! User types named `Option`, `Result`, `String`, `Vec`, `Some`, `Ok`, `Box`
//! and `Default` shadow the prelude in this module; the expansion still
//! means the std types, and the functions return std types by full path.
#![deny(warnings)]
#![deny(clippy::all)]
#![allow(dead_code)]

mod shadowing {
    use cache_runtime::{cached, invalidates};

    pub struct Option;
    pub struct Result;
    pub struct String;
    pub struct Vec;
    pub struct Box;
    pub struct Default;
    pub struct Some;
    pub struct Ok;
    pub struct Cache;
    pub struct KeyWriter;
    pub mod core {}
    pub mod std {}

    #[cached(key = "shadow:{id}", ttl = 60, tags = ["shadow"])]
    pub async fn get(
        id: u64,
    ) -> ::std::result::Result<::std::string::String, ::std::convert::Infallible> {
        ::std::result::Result::Ok(::std::format!("v{id}"))
    }

    #[cached(key = "shadow-opt:{id}", ttl = 60)]
    pub async fn get_opt(id: u64) -> ::std::option::Option<::std::vec::Vec<u64>> {
        ::std::option::Option::Some(::std::vec![id])
    }

    #[cached(ttl = 60)]
    pub async fn default_key(a: u64, b: u64) -> u64 {
        a + b
    }

    #[invalidates(keys = ["shadow:{id}"], tags = ["shadow"], patterns = ["shadow:*"])]
    pub async fn drop_it(id: u64) -> ::std::result::Result<(), ()> {
        let _ = id;
        ::std::result::Result::Ok(())
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(shadowing::get(1).await.unwrap(), "v1");
        assert_eq!(shadowing::get_opt(2).await, Some(vec![2]));
        assert_eq!(shadowing::default_key(2, 3).await, 5);
        assert!(shadowing::drop_it(1).await.is_ok());
    });
}
