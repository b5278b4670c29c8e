//! Every Rust snippet of the README and the guides is a doctest of this crate (see the
//! `#[cfg(doctest)]` modules in `src/lib.rs`); an `ignore`d one would let a guide drift from
//! the API again, and a guide missing from `src/lib.rs` would not be compiled at all.

use std::path::Path;

#[test]
fn every_guide_snippet_is_compiled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lib = std::fs::read_to_string(root.join("crates/eventsmith/src/lib.rs")).unwrap();
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    assert!(files.len() > 5, "found only {files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        if name != "README.md" {
            assert!(
                lib.contains(&format!("docs/{name}\")")),
                "{name} is not included as a doctest in src/lib.rs"
            );
        }
        for (n, line) in text.lines().enumerate() {
            let fence = line.trim_start();
            if let Some(info) = fence.strip_prefix("```") {
                assert!(
                    !info.split(',').any(|tag| tag.trim() == "ignore"),
                    "{name} line {}: an ignored Rust snippet; make it compile (hidden `# ` lines, `no_run`)",
                    n + 1
                );
            }
        }
    }
}
