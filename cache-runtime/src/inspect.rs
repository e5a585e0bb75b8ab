//! A look inside stored entries, for tools and debugging.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::envelope::{self, FLAG_NONE, FLAG_SEALED};
use crate::{Cache, Options};

/// What is stored for one key, as [`Cache::inspect`] reads it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// The key in the store.
    pub stored_key: String,
    /// Size of the stored bytes.
    pub size: usize,
    /// Envelope format version.
    pub format: u8,
    /// The codec's name (or its id when unknown).
    pub codec: String,
    /// The value is sealed (`encrypt = true`).
    pub encrypted: bool,
    /// The value is a cached "none".
    pub none: bool,
    /// Time before the store drops the entry.
    pub ttl: Option<Duration>,
    /// When the value stops being fresh (stale serving and early refresh start).
    pub fresh_until: SystemTime,
    /// How long the loader took to compute it.
    pub compute_time: Duration,
    /// Per tag: name, the version the entry recorded, the tag's current version.
    pub tags: Vec<(String, String, Option<String>)>,
    /// Whether every tag still has the recorded version (else the entry is a miss).
    pub tags_current: bool,
    /// Why the bytes are not a valid envelope, if they are not.
    pub invalid: Option<String>,
}

fn codec_name(id: u8) -> String {
    match id {
        1 => "postcard".into(),
        2 => "json".into(),
        3 => "msgpack".into(),
        4 => "bincode".into(),
        other => format!("unknown ({other})"),
    }
}

impl Cache {
    /// Reads the envelope of the entry of `key` without decoding its value.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use cache_runtime::{Cache, Options};
    /// let cache = Cache::builder().memory().build().await?;
    /// let opts = Options::new().ttl(Duration::from_secs(60)).tags(["users"]);
    /// cache.set("user:1", &"Ada", &opts).await?;
    /// let info = cache.inspect("user:1", &Options::new()).await?.unwrap();
    /// assert_eq!(info.codec, "postcard");
    /// assert_eq!(info.tags[0].0, "users");
    /// assert!(info.tags_current);
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn inspect(&self, key: &str, options: &Options) -> crate::Result<Option<EntryInfo>> {
        let keys = self.entry_keys(key, options.version);
        let Some(bytes) = self.inner.store.get(&keys.entry).await? else {
            return Ok(None);
        };
        let ttl = u64::try_from(self.inner.store.pttl(&keys.entry).await?)
            .ok()
            .map(Duration::from_millis);
        let mut info = EntryInfo {
            stored_key: keys.entry.clone(),
            size: bytes.len(),
            format: 0,
            codec: String::new(),
            encrypted: false,
            none: false,
            ttl,
            fresh_until: UNIX_EPOCH,
            compute_time: Duration::ZERO,
            tags: Vec::new(),
            tags_current: false,
            invalid: None,
        };
        let p = match envelope::parse(&bytes, usize::MAX) {
            Ok(p) => p,
            Err(e) => {
                info.invalid = Some(e.to_string());
                return Ok(Some(info));
            }
        };
        info.format = envelope::FORMAT;
        info.codec = codec_name(p.codec);
        info.encrypted = p.meta.flags & FLAG_SEALED != 0;
        info.none = p.meta.flags & FLAG_NONE != 0;
        info.fresh_until = UNIX_EPOCH + Duration::from_millis(p.meta.fresh_until_ms);
        info.compute_time = Duration::from_micros(u64::from(p.meta.compute_us));
        let recorded: Vec<String> = String::from_utf8_lossy(p.tokens)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let tag_keys: Vec<String> = p.tag_names.iter().map(|t| self.tag_key(t)).collect();
        let current = self.inner.store.mget(&tag_keys).await?;
        info.tags_current = recorded.len() == p.tag_names.len();
        for (i, name) in p.tag_names.iter().enumerate() {
            let rec = recorded.get(i).cloned().unwrap_or_default();
            let cur = current
                .get(i)
                .cloned()
                .flatten()
                .map(|c| String::from_utf8_lossy(&c).into_owned());
            if cur.as_deref() != Some(rec.as_str()) {
                info.tags_current = false;
            }
            info.tags.push((name.to_string(), rec, cur));
        }
        Ok(Some(info))
    }

    /// The current version token of each tag (`None`: the tag has none yet).
    pub async fn tag_versions(&self, tags: &[&str]) -> crate::Result<Vec<Option<String>>> {
        let keys: Vec<String> = tags.iter().map(|t| self.tag_key(t)).collect();
        Ok(self
            .inner
            .store
            .mget(&keys)
            .await?
            .into_iter()
            .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
            .collect())
    }
}
