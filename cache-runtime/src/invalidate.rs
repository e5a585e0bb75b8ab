use crate::Cache;
impl Cache {
    pub(crate) async fn invalidate_quiet(&self, _inv: &crate::__private::Invalidation) {}
}
pub(crate) async fn drain_retries(_c: &Cache) {}
