use std::future::Future;
use crate::{Cache, Options};
#[derive(Default)]
pub(crate) struct Flights;
impl Cache {
    pub(crate) async fn load_inner<T, E, F>(&self, _key: String, _opts: &Options, _is_none: fn(&T) -> bool, body: F) -> Result<T, E>
    where T: crate::__private::Cacheable, F: Future<Output = Result<T, E>> {
        body.await
    }
}
