//! Metrics through the `metrics` facade and tracing spans, with keys
//! optionally redacted.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_runtime::{Cache, Options};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::Registry;

/// Records the fields of every span opened.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<String>>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut line = format!("{} ", attrs.metadata().name());
        attrs.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn on_record(&self, _id: &Id, values: &tracing::span::Record<'_>, _ctx: Context<'_, S>) {
        let mut line = String::from("record ");
        values.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn metrics_and_spans() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("first recorder");
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(Registry::default().with(spans.clone()));

    let cache = Cache::builder()
        .memory()
        .prefix("obs")
        .build()
        .await
        .unwrap();
    let opts = Options::new()
        .ttl(Duration::from_secs(60))
        .function("app::get_user");
    for _ in 0..3 {
        let _: Result<u32, Infallible> = cache
            .get_or_load("user:42", &opts, || async { Ok(1) })
            .await;
    }
    let redacted = Cache::builder()
        .memory()
        .prefix("obs2")
        .redact_keys(true)
        .build()
        .await
        .unwrap();
    let _: Result<u32, Infallible> = redacted
        .get_or_load("user:secret@example.com", &opts, || async { Ok(1) })
        .await;

    let mut seen = std::collections::HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: Vec<String> = key
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        if labels.contains(&"cache=obs".to_string())
            && labels.contains(&"function=app::get_user".to_string())
        {
            seen.insert(key.key().name().to_string(), value);
        }
    }
    assert_eq!(
        seen.get("cache_hits_total"),
        Some(&DebugValue::Counter(2)),
        "{seen:?}"
    );
    assert_eq!(
        seen.get("cache_misses_total"),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(seen.get("cache_loads_total"), Some(&DebugValue::Counter(1)));
    assert!(
        matches!(seen.get("cache_load_seconds"), Some(DebugValue::Histogram(h)) if h.len() == 1)
    );

    let spans = spans.0.lock().unwrap().join("\n");
    assert!(spans.contains("cache.read"), "{spans}");
    assert!(spans.contains("user:42"), "keys shown by default: {spans}");
    assert!(
        !spans.contains("secret@example.com"),
        "redacted keys never appear: {spans}"
    );
}
