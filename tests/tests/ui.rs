//! Compile-time behavior of `#[cached]` and `#[invalidates]`: every case
//! under `ui/fail` must fail with exactly the errors in its `.stderr` file,
//! and every case under `ui/pass` must compile without warnings and run.
//!
//! Regenerate the `.stderr` files after a deliberate change of wording with
//! `TRYBUILD=overwrite cargo test -p cache-tests --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/fail/*.rs");
    t.pass("ui/pass/*.rs");
}
