//! A forged length in stored bytes cannot make decoding allocate more than the
//! maximum value size.
//!
//! A counting global allocator records, for the decoding thread only, the
//! largest single allocation and the peak of live bytes while stored bytes go
//! through the read path (`__private::decode_stored`: envelope, size limit,
//! codec) with a maximum value size of [`MAX`].
//!
//! What is bounded is what a decoder reserves *in advance*, from a length read
//! in the input: a sequence or map never reserves room for more elements than
//! the input has bytes. Content that is really there is another matter: a
//! genuine 4 KiB postcard value can hold 4000 empty vectors, which take 96 KiB
//! in memory. The checks below therefore use
//!
//! * hand-forged values (huge length prefixes, a few bytes of body), of every
//!   shape and codec;
//! * arbitrary payloads of up to [`SMALL`] bytes, optionally after a forged
//!   huge length: with the widest element used here (56 bytes) the bound of
//!   one element per input byte stays under [`MAX`];
//! * arbitrary payloads of any length up to [`MAX`] for types whose elements
//!   are single bytes (`Vec<u8>`, `String`), where the bound holds at full size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;

use cache_runtime::__private::{decode_stored, fingerprint};
use cache_runtime::CodecKind;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The maximum value size the decoder is given.
const MAX: usize = 4096;
/// Length of the envelope header that [`stored`] writes.
const HEADER: usize = 34;
/// Longest arbitrary payload fed to types with wide elements.
const SMALL: usize = 64;

struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static REALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize, freed: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            LARGEST.set(LARGEST.get().max(size));
            let live = LIVE.get() + size as isize - freed as isize;
            LIVE.set(live);
            PEAK.set(PEAK.get().max(live));
        }
    });
}

fn note_free(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            LIVE.set(LIVE.get() - size as isize);
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size(), 0);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size(), 0);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc(new_size, layout.size());
        let _ = TRACKING.try_with(|t| {
            if t.get() {
                REALLOCS.set(REALLOCS.get() + 1);
            }
        });
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What one decode allocated.
#[derive(Debug, Clone, Copy)]
struct Usage {
    largest: usize,
    peak: usize,
    reallocs: usize,
}

/// Decodes `bytes` as a stored `T` and reports the allocations made meanwhile
/// on this thread.
fn measure<T: DeserializeOwned>(bytes: &[u8], codec: CodecKind) -> Usage {
    // The type's fingerprint is traced once per process: not part of a decode.
    let _ = fingerprint::<T>();
    LARGEST.set(0);
    LIVE.set(0);
    PEAK.set(0);
    REALLOCS.set(0);
    TRACKING.set(true);
    let out = decode_stored::<T>(bytes, codec, MAX);
    TRACKING.set(false);
    drop(out);
    Usage {
        largest: LARGEST.get(),
        peak: PEAK.get().max(0) as usize,
        reallocs: REALLOCS.get(),
    }
}

/// Wraps `payload` in a plaintext envelope for a `T` (see `envelope.rs`): no
/// tags, fresh.
fn stored<T: DeserializeOwned>(codec: CodecKind, payload: &[u8]) -> Vec<u8> {
    let mut v = b"RC\x02".to_vec();
    v.push(codec.id());
    v.push(0);
    v.push(b';');
    v.extend_from_slice(&u64::MAX.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&u32::try_from(payload.len()).expect("short").to_le_bytes());
    v.extend_from_slice(&fingerprint::<T>().to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(v.len(), HEADER);
    v.extend_from_slice(payload);
    v
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Rec {
    id: u32,
    name: String,
    tags: Vec<u8>,
}

fn rec() -> Rec {
    Rec {
        id: 7,
        name: "n".into(),
        tags: vec![1, 2],
    }
}

fn encode<T: Serialize + ?Sized>(codec: CodecKind, v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    codec.encode(v, &mut out).expect("encodable");
    out
}

fn codecs() -> Vec<CodecKind> {
    vec![
        CodecKind::Postcard,
        CodecKind::Json,
        CodecKind::MsgPack,
        #[cfg(feature = "bincode")]
        CodecKind::Bincode,
    ]
}

/// What a length prefix announces.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Seq,
    Map,
    Str,
}

/// A length prefix announcing `n` elements or bytes, as `codec` writes it;
/// `None` for JSON, which has none.
fn prefix(codec: CodecKind, shape: Shape, n: u64) -> Option<Vec<u8>> {
    match codec.name() {
        "postcard" => {
            let mut out = Vec::new();
            let mut n = n;
            while n >= 0x80 {
                out.push((n as u8) | 0x80);
                n >>= 7;
            }
            out.push(n as u8);
            Some(out)
        }
        "msgpack" => {
            let marker = match shape {
                Shape::Seq => 0xdd,
                Shape::Map => 0xdf,
                Shape::Str => 0xdb,
            };
            let mut out = vec![marker];
            out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
            Some(out)
        }
        "bincode" => {
            let mut out = vec![0xfd];
            out.extend_from_slice(&n.to_le_bytes());
            Some(out)
        }
        _ => None,
    }
}

/// Decodes `payload` as each type used here, recording every decode whose
/// largest allocation exceeds `largest` or whose peak exceeds `peak`.
fn check_all(
    codec: CodecKind,
    payload: &[u8],
    largest: usize,
    peak: usize,
    what: &str,
    failures: &mut Vec<String>,
) {
    let as_type = |ty: &str| -> Vec<u8> {
        match ty {
            "Vec<u8>" => stored::<Vec<u8>>(codec, payload),
            "String" => stored::<String>(codec, payload),
            "Vec<Rec>" => stored::<Vec<Rec>>(codec, payload),
            "HashMap<String, u64>" => stored::<HashMap<String, u64>>(codec, payload),
            _ => stored::<Vec<Vec<u8>>>(codec, payload),
        }
    };
    let mut check = |ty: &str, u: Usage| {
        if u.largest > largest || u.peak > peak {
            failures.push(format!(
                "{} {what} as {ty}: {} payload bytes, largest allocation {} bytes, peak {} bytes",
                codec.name(),
                payload.len(),
                u.largest,
                u.peak
            ));
        }
    };
    check("Vec<u8>", measure::<Vec<u8>>(&as_type("Vec<u8>"), codec));
    check("String", measure::<String>(&as_type("String"), codec));
    check("Vec<Rec>", measure::<Vec<Rec>>(&as_type("Vec<Rec>"), codec));
    check(
        "HashMap<String, u64>",
        measure::<HashMap<String, u64>>(&as_type("HashMap<String, u64>"), codec),
    );
    check(
        "Vec<Vec<u8>>",
        measure::<Vec<Vec<u8>>>(&as_type("Vec<Vec<u8>>"), codec),
    );
}

/// Lengths announced by the forged values: just over the maximum, the 1 MiB
/// that serde would preallocate at most, the largest u32, and far beyond.
const FORGED: [u64; 5] = [
    MAX as u64 + 1,
    1 << 20,
    u32::MAX as u64,
    1 << 40,
    u64::MAX >> 1,
];

/// Hand-forged payloads: each shape with a huge announced length and a few
/// genuine bytes after it.
fn forged(codec: CodecKind) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if codec == CodecKind::Json {
        for text in [
            "[1,2,3",
            "\"abc",
            "[{\"id\":1,\"name\":\"n\",\"tags\":[1]}",
            "{\"k\":1",
            "[[1,2],[",
        ] {
            out.push((format!("truncated {text:?}"), text.as_bytes().to_vec()));
        }
        return out;
    }
    let p = |shape, n| prefix(codec, shape, n).expect("length-prefixed codec");
    for n in FORGED {
        let bytes_body = encode(codec, &1u8);
        let mut v = p(Shape::Seq, n);
        for _ in 0..3 {
            v.extend_from_slice(&bytes_body);
        }
        out.push((format!("sequence of {n} bytes"), v));

        let mut v = p(Shape::Str, n);
        v.extend_from_slice(b"abc");
        out.push((format!("string of {n} bytes"), v));

        let mut v = p(Shape::Seq, n);
        v.extend_from_slice(&encode(codec, &rec()));
        out.push((format!("sequence of {n} records"), v));

        let mut v = p(Shape::Map, n);
        v.extend_from_slice(&encode(codec, "k"));
        v.extend_from_slice(&encode(codec, &1u64));
        out.push((format!("map of {n} entries"), v));

        let mut v = p(Shape::Seq, n);
        v.extend_from_slice(&encode(codec, &vec![1u8, 2]));
        out.push((format!("sequence of {n} byte vectors"), v));

        let mut v = p(Shape::Seq, 2);
        v.extend_from_slice(&encode(codec, &vec![1u8, 2]));
        v.extend_from_slice(&p(Shape::Seq, n));
        v.extend_from_slice(&bytes_body);
        out.push((format!("second inner vector of {n} bytes"), v));
    }
    out
}

fn forged_values_allocate_little(codec: CodecKind) {
    let mut failures = Vec::new();
    for (what, payload) in forged(codec) {
        check_all(codec, &payload, MAX, MAX, &what, &mut failures);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn forged_lengths_postcard() {
    forged_values_allocate_little(CodecKind::Postcard);
}

#[test]
fn forged_lengths_json() {
    forged_values_allocate_little(CodecKind::Json);
}

#[test]
fn forged_lengths_msgpack() {
    forged_values_allocate_little(CodecKind::MsgPack);
}

#[cfg(feature = "bincode")]
#[test]
fn forged_lengths_bincode() {
    forged_values_allocate_little(CodecKind::Bincode);
}

#[test]
fn the_envelope_written_here_is_the_real_one() {
    for codec in codecs() {
        let value = vec![rec(), rec()];
        let bytes = stored::<Vec<Rec>>(codec, &encode(codec, &value));
        assert_eq!(decode_stored::<Vec<Rec>>(&bytes, codec, MAX), Ok(value));
        let map: HashMap<String, u64> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        let bytes = stored::<HashMap<String, u64>>(codec, &encode(codec, &map));
        assert_eq!(
            decode_stored::<HashMap<String, u64>>(&bytes, codec, MAX),
            Ok(map)
        );
        let big = vec![0u8; MAX];
        let bytes = stored::<Vec<u8>>(codec, &encode(codec, &big));
        assert!(
            decode_stored::<Vec<u8>>(&bytes, codec, MAX).is_err(),
            "over the maximum"
        );
    }
}

/// Genuine values keep their reservations: nested vectors decode without a
/// single reallocation, the outer and every inner vector at its final size.
#[test]
fn genuine_values_are_still_reserved_for() {
    let value: Vec<Vec<u32>> = (0..10).map(|i| (0..50).map(|j| i * j).collect()).collect();
    for codec in codecs() {
        if codec == CodecKind::Json {
            continue;
        }
        let bytes = stored::<Vec<Vec<u32>>>(codec, &encode(codec, &value));
        let u = measure::<Vec<Vec<u32>>>(&bytes, codec);
        assert_eq!(u.reallocs, 0, "{}: {u:?}", codec.name());
        let outer = 10 * size_of::<Vec<u32>>();
        assert_eq!(u.largest, outer.max(50 * 4), "{}: {u:?}", codec.name());
    }
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![Just(Shape::Seq), Just(Shape::Map), Just(Shape::Str)]
}

proptest! {
    #[test]
    fn arbitrary_small_payloads(payload in proptest::collection::vec(any::<u8>(), 0..=SMALL)) {
        let mut failures = Vec::new();
        for codec in codecs() {
            check_all(codec, &payload, MAX, MAX, "arbitrary", &mut failures);
        }
        prop_assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn forged_length_then_arbitrary_bytes(
        shape in shape(),
        n in (MAX as u64 + 1)..=u64::MAX >> 1,
        tail in proptest::collection::vec(any::<u8>(), 0..=SMALL),
    ) {
        let mut failures = Vec::new();
        for codec in codecs() {
            let Some(mut payload) = prefix(codec, shape, n) else { continue };
            payload.extend_from_slice(&tail);
            check_all(codec, &payload, MAX, MAX, "forged length", &mut failures);
        }
        prop_assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn arbitrary_payloads_of_bytes_up_to_the_maximum(
        payload in proptest::collection::vec(any::<u8>(), 0..=MAX - HEADER),
    ) {
        for codec in codecs() {
            let (bytes, text) = (stored::<Vec<u8>>(codec, &payload), stored::<String>(codec, &payload));
            for u in [measure::<Vec<u8>>(&bytes, codec), measure::<String>(&text, codec)] {
                prop_assert!(
                    u.largest <= MAX,
                    "{}: {} payload bytes, largest allocation {}",
                    codec.name(),
                    payload.len(),
                    u.largest
                );
            }
        }
    }
}
