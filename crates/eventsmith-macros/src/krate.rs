//! Which path generated code uses to name eventsmith's core vocabulary.

use proc_macro_crate::FoundCrate;
use proc_macro2::Span;
use syn::{Ident, Path, parse_quote};

/// The path to the `eventsmith-core` crate as the crate being compiled sees it: the
/// `crate = path` override if given, else the core itself if it is a dependency, else the
/// core as re-exported by the facade `eventsmith` (each under the name the crate's
/// `Cargo.toml` gives it).
///
/// Generated code names every item through this path, so that it does not depend on which
/// names the facade chooses to re-export at its top level.
pub(crate) fn core_path(explicit: Option<Path>) -> Path {
    explicit.unwrap_or_else(|| resolve(|name| proc_macro_crate::crate_name(name).ok()))
}

/// The hidden name under which the facade re-exports the core crate.
const FACADE_CORE: &str = "__core";

/// `find` tells how the crate being compiled names a dependency, if it has it.
///
/// The core is preferred when both are dependencies: it is the crate that defines the items,
/// so it needs nothing from the facade.
fn resolve(find: impl Fn(&str) -> Option<FoundCrate>) -> Path {
    // `Itself` is also what a package's own integration tests, examples and doctests see:
    // they name the package by its library name, which the package's library itself cannot
    // do, but neither library uses these derives.
    let name = |found| match found {
        FoundCrate::Itself => None,
        FoundCrate::Name(name) => Some(name),
    };
    if let Some(found) = find("eventsmith-core") {
        return absolute(
            &name(found).unwrap_or_else(|| "eventsmith_core".into()),
            None,
        );
    }
    let facade = find("eventsmith").and_then(name);
    // Without a manifest to read (a build system other than Cargo) or with neither
    // dependency, name the facade: the compiler's "unresolved crate `eventsmith`" then says
    // what to add.
    absolute(facade.as_deref().unwrap_or("eventsmith"), Some(FACADE_CORE))
}

fn absolute(krate: &str, module: Option<&str>) -> Path {
    let krate = Ident::new(krate, Span::call_site());
    match module {
        Some(module) => {
            let module = Ident::new(module, Span::call_site());
            parse_quote!(::#krate::#module)
        }
        None => parse_quote!(::#krate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::ToTokens;

    fn path_for(deps: &[(&str, FoundCrate)]) -> String {
        resolve(|name| {
            deps.iter()
                .find(|(dep, _)| *dep == name)
                .map(|(_, found)| found.clone())
        })
        .to_token_stream()
        .to_string()
        .replace(' ', "")
    }

    #[test]
    fn the_core_is_named_when_depended_on_directly() {
        let deps = [(
            "eventsmith-core",
            FoundCrate::Name("eventsmith_core".into()),
        )];
        assert_eq!(path_for(&deps), "::eventsmith_core");
    }

    #[test]
    fn the_facade_is_named_when_only_it_is_a_dependency() {
        let deps = [("eventsmith", FoundCrate::Name("eventsmith".into()))];
        assert_eq!(path_for(&deps), "::eventsmith::__core");
    }

    #[test]
    fn a_renamed_dependency_is_named_by_its_new_name() {
        let deps = [("eventsmith", FoundCrate::Name("es".into()))];
        assert_eq!(path_for(&deps), "::es::__core");
    }

    #[test]
    fn the_core_wins_over_the_facade() {
        let deps = [
            ("eventsmith", FoundCrate::Name("eventsmith".into())),
            ("eventsmith-core", FoundCrate::Name("core2".into())),
        ];
        assert_eq!(path_for(&deps), "::core2");
    }

    #[test]
    fn the_core_s_own_tests_name_it_by_its_library_name() {
        let deps = [("eventsmith-core", FoundCrate::Itself)];
        assert_eq!(path_for(&deps), "::eventsmith_core");
    }

    #[test]
    fn without_either_the_facade_is_named() {
        assert_eq!(path_for(&[]), "::eventsmith::__core");
    }
}
