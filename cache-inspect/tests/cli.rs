//! The inspection tool against a harness redis-server.

use std::process::Command;
use std::time::Duration;

use cache_runtime::{Cache, Options};

fn inspect(url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cache-inspect"))
        .args(["--url", url, "--prefix", "tool"])
        .args(args)
        .output()
        .expect("run cache-inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shows_and_invalidates() {
    let server = cache_tests::RedisServer::start();
    let url = server.url();
    let cache = Cache::builder()
        .url(&url)
        .prefix("tool")
        .build()
        .await
        .unwrap();
    let opts = Options::new()
        .ttl(Duration::from_secs(600))
        .tags(["users", "user:1"]);
    cache
        .set("user:1", &"Ada".to_string(), &opts)
        .await
        .unwrap();

    let entry = inspect(&url, &["entry", "user:1"]);
    assert!(entry.contains("codec        postcard"), "{entry}");
    assert!(entry.contains("tag          users"), "{entry}");
    assert!(entry.contains("readable     yes"), "{entry}");

    assert!(inspect(&url, &["tags", "users"]).starts_with("users: "));
    inspect(&url, &["invalidate-tag", "users"]);
    let entry = inspect(&url, &["entry", "user:1"]);
    assert!(
        entry.contains("INVALIDATED") && entry.contains("readable     no"),
        "{entry}"
    );
    assert_eq!(cache.get::<String>("user:1").await.unwrap(), None);

    cache.set("search:a", &1u8, &opts).await.unwrap();
    cache.set("search:b", &1u8, &opts).await.unwrap();
    let listed = inspect(&url, &["keys", "search:*"]);
    assert!(
        listed.contains("search:a") && listed.contains("search:b") && !listed.contains("user"),
        "{listed}"
    );
    assert!(inspect(&url, &["invalidate-pattern", "search:*"]).contains("deleted 2"));
    assert!(inspect(&url, &["entry", "search:a"]).contains("no entry"));
    // Every schema version of a key goes, though the tool never used one.
    let v3 = Options::new().ttl(Duration::from_secs(600)).version(3);
    let read = async || -> u32 {
        let v: Result<u32, std::convert::Infallible> =
            cache.get_or_load("vk", &v3, || async { Ok(3) }).await;
        v.unwrap()
    };
    read().await;
    read().await;
    let loads = cache.stats().loads;
    inspect(&url, &["invalidate-key", "vk"]);
    read().await;
    assert_eq!(
        cache.stats().loads,
        loads + 1,
        "the v3 entry was invalidated"
    );
    assert!(inspect(&url, &["queue", "app::save"]).contains("0 queued, 0 dead letters"));
    // A dead letter, as the flusher writes one.
    let mut conn = server.conn().await;
    let _: String = redis::cmd("XADD")
        .arg("tool:wb:app::save:dead")
        .arg("*")
        .arg(&["k", "user:9", "a", "", "error", "db down", "attempts", "5"][..])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(inspect(&url, &["queue", "app::save"]).contains("1 dead letters"));
    let dead = inspect(&url, &["dead", "app::save"]);
    assert!(
        dead.contains("key user:9") && dead.contains("after 5 attempts: db down"),
        "{dead}"
    );

    let secret_url = format!("redis://default:hunter2@127.0.0.1:{}", server.port());
    let out = Command::new(env!("CARGO_BIN_EXE_cache-inspect"))
        .args(["--url", &secret_url, "--prefix", "tool", "entry", "nope"])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("hunter2"), "credentials never printed: {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_deletes_across_a_cluster() {
    let cluster = cache_tests::shared_cluster();
    let prefix = cache_tests::unique_prefix("tool");
    let cache = Cache::builder()
        .cluster(cluster.urls())
        .prefix(&prefix)
        .build()
        .await
        .unwrap();
    let opts = Options::new().ttl(Duration::from_secs(600));
    for i in 0..20 {
        cache.set(format!("item:{i}"), &i, &opts).await.unwrap();
    }
    let seeds: Vec<String> = cluster
        .urls()
        .into_iter()
        .flat_map(|u| ["--cluster".to_string(), u])
        .collect();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cache-inspect"))
            .args(&seeds)
            .args(["--prefix", &prefix])
            .args(args)
            .output()
            .expect("run cache-inspect");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = run(&["keys", "item:*"]);
    for i in 0..20 {
        assert!(
            listed.lines().any(|l| l.trim() == format!("item:{i}")),
            "item:{i} listed from whichever primary holds it:\n{listed}"
        );
    }
    assert!(run(&["invalidate-pattern", "item:*"]).contains("deleted 20"));
    assert_eq!(cache.get::<u32>("item:3").await.unwrap(), None);
}
