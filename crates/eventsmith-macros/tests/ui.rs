//! Compile errors for bad input, each pointing at the offending tokens. The expected output
//! is in `tests/ui/*.stderr`; after a deliberate change, regenerate it with
//! `TRYBUILD=overwrite cargo test -p eventsmith-macros --test ui` and review the diff.

#[test]
fn bad_input_is_a_compile_error_at_its_span() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
