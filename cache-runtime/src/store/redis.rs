pub(crate) struct RedisStore;
impl RedisStore {
    pub(crate) async fn connect(_url: &str, _t: std::time::Duration) -> crate::Result<Self> { Ok(RedisStore) }
}
