//! `rediss://` (rustls) and ACL users against a redis-server started by the
//! harness with a TLS port and an ACL user; certificates are generated here.
//! Credentials never show in `Debug` output.

use std::convert::Infallible;
use std::time::Duration;

use cache_runtime::{Cache, Options};
use cache_tests::{RedisServer, free_port};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

struct Pki {
    ca_pem: String,
    dir: tempfile::TempDir,
}

/// A CA and a server certificate for 127.0.0.1 / localhost, written to files.
fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        dir,
    }
}

fn path(p: &Pki, name: &str) -> String {
    p.dir.path().join(name).to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_an_acl_user() {
    let pki = pki();
    let tls_port = free_port().to_string();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &path(&pki, "server.pem"),
        "--tls-key-file",
        &path(&pki, "server.key"),
        "--tls-ca-cert-file",
        &path(&pki, "ca.pem"),
        "--tls-auth-clients",
        "no",
        "--user",
        "app",
        "on",
        ">s3cret-pass",
        "~*",
        "&*",
        "+@all",
        // Only the ACL user can run anything: a cache that dropped the URL's
        // credentials would fail every command.
        "--user",
        "default",
        "off",
    ]);
    let _ = &server;
    let url = format!("rediss://app:s3cret-pass@127.0.0.1:{tls_port}");
    let builder = Cache::builder()
        .url(&url)
        .prefix("tls")
        .tls_root_cert(pki.ca_pem.as_bytes());
    assert!(
        !format!("{builder:?}").contains("s3cret-pass"),
        "builder Debug hides the password"
    );
    let cache = builder.build().await.unwrap();
    assert!(!format!("{cache:?}").contains("s3cret-pass"));
    let opts = Options::new().ttl(Duration::from_secs(60));
    let v: Result<u32, Infallible> = cache.get_or_load("k", &opts, || async { Ok(5) }).await;
    assert_eq!(v.unwrap(), 5);
    let v: Result<u32, Infallible> = cache.get_or_load("k", &opts, || async { Ok(6) }).await;
    assert_eq!(v.unwrap(), 5, "a hit over TLS as the ACL user");
    assert_eq!(cache.stats().errors, 0);

    // The control: without the credentials, the server refuses the cache.
    let anonymous = Cache::builder()
        .url(format!("rediss://127.0.0.1:{tls_port}"))
        .prefix("tls")
        .tls_root_cert(pki.ca_pem.as_bytes())
        .build()
        .await;
    assert!(
        matches!(anonymous, Err(cache_runtime::Error::Config(_))),
        "refused as the default user: {anonymous:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_missing_key_access_fail_the_build() {
    let server = RedisServer::start_with(&[
        "--user", "app", "on", ">right", "~*", "&*", "+@all", "--user", "other", "on", ">pw",
        "~other:*", "&*", "+@all", "--user", "default", "off",
    ]);
    let build = async |url: String| Cache::builder().url(&url).prefix("acl").build().await;
    let port = server.port();
    let wrong = build(format!("redis://app:wrong@127.0.0.1:{port}")).await;
    let err = wrong.expect_err("a wrong password is a configuration error");
    assert!(
        matches!(err, cache_runtime::Error::Config(_)) && err.to_string().contains("credentials"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("wrong"),
        "no password in the message: {err}"
    );
    let no_keys = build(format!("redis://other:pw@127.0.0.1:{port}")).await;
    assert!(
        matches!(no_keys, Err(cache_runtime::Error::Config(_))),
        "a user that may not touch the cache's keys: {no_keys:?}"
    );
    let ok = build(format!("redis://app:right@127.0.0.1:{port}"))
        .await
        .unwrap();
    let opts = Options::new().ttl(Duration::from_secs(60));
    let v: Result<u32, Infallible> = ok.get_or_load("k", &opts, || async { Ok(6) }).await;
    assert_eq!(v.unwrap(), 6);
    assert_eq!(ok.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_still_builds_and_fails_open() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let cache = Cache::builder()
        .url(&url)
        .prefix("down")
        .op_timeout(Duration::from_millis(100))
        .build()
        .await
        .expect("an outage is not a configuration error");
    let opts = Options::new().ttl(Duration::from_secs(60));
    let v: Result<u32, Infallible> = cache.get_or_load("k", &opts, || async { Ok(5) }).await;
    assert_eq!(v.unwrap(), 5, "the loader still answers");
    assert!(cache.stats().errors > 0, "the failure is counted");
}
