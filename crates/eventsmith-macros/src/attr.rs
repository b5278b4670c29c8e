//! Parsing of the `#[event(...)]` helper attribute, shared by both derives.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, LitBool, LitInt, LitStr, Path, Token};

/// Where an `#[event(...)]` attribute was written, which decides the options it may hold.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// On a type deriving `Event`: every option.
    EventType,
    /// On an enum deriving `DomainEvent`: only `crate`, since topics belong to the event types.
    EventEnum,
}

/// The options of every `#[event(...)]` attribute on one item, each given at most once.
#[derive(Default)]
pub(crate) struct EventAttrs {
    pub(crate) topic: Option<LitStr>,
    /// The schema version, checked to be at least 1, with the literal for its span.
    pub(crate) version: Option<(u32, LitInt)>,
    pub(crate) discards: Option<bool>,
    pub(crate) krate: Option<Path>,
}

impl EventAttrs {
    /// Parses every `#[event(...)]` among `attrs`, reporting every mistake rather than the
    /// first, so that a user fixes them in one round.
    pub(crate) fn parse(attrs: &[Attribute], place: Place) -> syn::Result<Self> {
        let mut out = EventAttrs::default();
        let mut errors = Errors::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
            let parsed = attr.parse_nested_meta(|meta| {
                // A mistake in one option is reported, and parsing goes on with the next.
                if let Err(e) = out.option(&meta, place) {
                    errors.push(e);
                    skip_value(&meta)?;
                }
                Ok(())
            });
            if let Err(e) = parsed {
                errors.push(e);
            }
        }
        errors.finish()?;
        Ok(out)
    }

    fn option(&mut self, meta: &ParseNestedMeta<'_>, place: Place) -> syn::Result<()> {
        let path = &meta.path;
        if path.is_ident("crate") {
            let value = meta.value()?;
            let krate = if value.peek(LitStr) {
                value.parse::<LitStr>()?.parse_with(Path::parse_mod_style)?
            } else {
                Path::parse_mod_style(value)?
            };
            return set(&mut self.krate, krate, meta, "crate");
        }
        let key = if path.is_ident("topic") {
            "topic"
        } else if path.is_ident("version") {
            "version"
        } else if path.is_ident("discards") {
            "discards"
        } else {
            let name = quote::ToTokens::to_token_stream(path)
                .to_string()
                .replace(' ', "");
            return Err(meta.error(match place {
                Place::EventType => format!(
                    "unknown option `{name}` of `#[event]`; expected `topic = \"...\"`, \
                     `version = N`, `discards` or `crate = path`"
                ),
                Place::EventEnum => format!(
                    "unknown option `{name}` of `#[event]` on an event enum; the only option \
                     here is `crate = path`"
                ),
            }));
        };
        if place == Place::EventEnum {
            return Err(meta.error(format!(
                "`{key}` belongs on each event type, not on the event enum: write \
                 `#[event({key} = ...)]` on the type a variant wraps"
            )));
        }
        match key {
            "topic" => {
                let topic: LitStr = meta.value()?.parse()?;
                check_topic(&topic)?;
                set(&mut self.topic, topic, meta, key)
            }
            "version" => {
                let lit: LitInt = meta.value()?.parse()?;
                let version = lit.base10_parse::<u32>().map_err(|_| {
                    syn::Error::new(lit.span(), "the schema version must be a `u32` literal")
                })?;
                if version == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "schema versions start at 1 (the version of a type that never changed)",
                    ));
                }
                set(&mut self.version, (version, lit), meta, key)
            }
            _ => {
                // `discards` alone means `discards = true`.
                let discards = if meta.input.peek(Token![=]) {
                    meta.value()?.parse::<LitBool>()?.value
                } else {
                    true
                };
                set(&mut self.discards, discards, meta, key)
            }
        }
    }
}

/// A topic is stored with every event and compared byte for byte: an empty one, or one with
/// whitespace at either end, is certainly a mistake and would be hard to fix once stored.
fn check_topic(topic: &LitStr) -> syn::Result<()> {
    let value = topic.value();
    if value.is_empty() {
        return Err(syn::Error::new(topic.span(), "the topic must not be empty"));
    }
    if value.trim() != value {
        return Err(syn::Error::new(
            topic.span(),
            "the topic must not start or end with whitespace",
        ));
    }
    Ok(())
}

fn set<T>(
    slot: &mut Option<T>,
    value: T,
    meta: &ParseNestedMeta<'_>,
    key: &str,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error(format!("`{key}` is given more than once")));
    }
    *slot = Some(value);
    Ok(())
}

/// After a bad option, skips what is left of it (such as `= value`) so the next one parses.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        meta.input.parse::<proc_macro2::TokenTree>()?;
    }
    Ok(())
}

/// Collects errors so that one expansion reports all of them.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn error(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// An error spanning all of `tokens`, from their first to their last token.
    pub(crate) fn spanned(
        &mut self,
        tokens: impl quote::ToTokens,
        message: impl std::fmt::Display,
    ) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The tokens to blame for generics: the parameters, or the `where` clause if there are none.
pub(crate) fn generics(generics: &syn::Generics) -> proc_macro2::TokenStream {
    if generics.params.is_empty() {
        quote::ToTokens::to_token_stream(&generics.where_clause)
    } else {
        quote::ToTokens::to_token_stream(generics)
    }
}
