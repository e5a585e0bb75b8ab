//! The fingerprint of a value type's serde shape, recorded with every entry:
//! an entry is decoded only as a type of the same shape.
//!
//! Formats such as postcard carry no field names: bytes written for
//! `struct A { x: u32, y: u32 }` decode as `struct B { y: u32, x: u32 }` with
//! the fields swapped, and as a `u64`, and two functions sharing a key
//! template would read each other's values. The fingerprint tells them
//! apart: a hash of the type's shape as [serde-reflection] traces it (field
//! names and order, variant names, nested types, recursively), so that two
//! builds agree on it exactly when they agree on the shape.
//!
//! A type that cannot be traced (one that deserializes through
//! `deserialize_any`, as untagged enums and `serde_json::Value` do, or that
//! validates its input in a custom `Deserialize`) is fingerprinted by its
//! type name instead: a renamed type then misses, a reordered one does not.
//!
//! Tracing runs once per type and process; later look-ups cost a few
//! nanoseconds (a per-thread map keyed by the type name's address).
//!
//! [serde-reflection]: https://docs.rs/serde-reflection

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{LazyLock, Mutex, PoisonError};

use serde::de::DeserializeOwned;
use serde_reflection::{FormatHolder, Samples, Tracer, TracerConfig};

/// The fingerprint of `T`'s serde shape.
pub(crate) fn of<T: DeserializeOwned>() -> u64 {
    let name = std::any::type_name::<T>();
    let id = (name.as_ptr() as usize, name.len());
    thread_local! {
        static SEEN: RefCell<HashMap<(usize, usize), u64, foldhash::fast::RandomState>> =
            RefCell::new(HashMap::default());
    }
    let known = SEEN.with(|seen| seen.borrow().get(&id).copied());
    if let Some(fp) = known {
        return fp;
    }
    let fp = traced::<T>(name);
    SEEN.with(|seen| seen.borrow_mut().insert(id, fp));
    fp
}

/// The fingerprint of `T` from the process-wide table, tracing it the first
/// time.
fn traced<T: DeserializeOwned>(name: &'static str) -> u64 {
    static ALL: LazyLock<Mutex<HashMap<&'static str, u64>>> = LazyLock::new(Default::default);
    if let Some(fp) = ALL.lock().unwrap_or_else(PoisonError::into_inner).get(name) {
        return *fp;
    }
    let shape = catch_unwind(AssertUnwindSafe(shape::<T>)).ok().flatten();
    let fp = match shape {
        Some(bytes) => hash(b"shape", &bytes),
        None => hash(b"name", name.as_bytes()),
    };
    ALL.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name, fp);
    fp
}

/// `T`'s traced format and the containers it reaches, encoded; `None` when
/// `T` cannot be traced.
fn shape<T: DeserializeOwned>() -> Option<Vec<u8>> {
    let mut tracer = Tracer::new(TracerConfig::default());
    let samples = Samples::new();
    let (mut format, _) = tracer.trace_type::<T>(&samples).ok()?;
    format.normalize().ok()?;
    let registry = tracer.registry().ok()?;
    postcard::to_stdvec(&(format, registry)).ok()
}

fn hash(kind: &[u8], bytes: &[u8]) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(kind).update(b"\0").update(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::of;
    use serde::Deserialize;

    mod before {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        pub struct User {
            pub id: u64,
            pub name: String,
        }
    }

    mod after {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        pub struct User {
            pub name: String,
            pub id: u64,
        }
    }

    mod same {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        pub struct User {
            pub id: u64,
            pub name: String,
        }
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Choice {
        A,
        B(u32),
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Renamed {
        A,
        C(u32),
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Tree {
        children: Vec<Tree>,
    }

    #[test]
    fn shapes_tell_types_apart() {
        assert_ne!(of::<u32>(), of::<u64>());
        assert_ne!(
            of::<before::User>(),
            of::<after::User>(),
            "reordered fields"
        );
        assert_eq!(
            of::<before::User>(),
            of::<same::User>(),
            "the same shape in another module"
        );
        assert_ne!(of::<Choice>(), of::<Renamed>(), "a renamed variant");
        assert_ne!(of::<Vec<u8>>(), of::<String>());
        assert_eq!(of::<Tree>(), of::<Tree>(), "recursive types trace");
    }

    #[test]
    fn untraceable_types_fall_back_to_their_name() {
        // `serde_json::Value` deserializes through `deserialize_any`.
        assert_eq!(of::<serde_json::Value>(), of::<serde_json::Value>());
        assert_ne!(of::<serde_json::Value>(), of::<String>());
    }
}
