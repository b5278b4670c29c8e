//! `#[derive(Event)]`: the `Event` implementation of one domain event type.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput};

use crate::attr::{Errors, EventAttrs, Place, generics};
use crate::krate::core_path;

pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    if let Data::Union(u) = &input.data {
        errors.error(
            u.union_token.span,
            "an event is a struct or an enum, serialized with serde; unions are not supported",
        );
    }
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        errors.spanned(
            generics(&input.generics),
            "an event type cannot be generic: its topic names one concrete type in the store",
        );
    }
    let attrs = match EventAttrs::parse(&input.attrs, Place::EventType) {
        Ok(attrs) => Some(attrs),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    if let Some(EventAttrs { topic: None, .. }) = &attrs {
        let hint = if matches!(input.data, Data::Enum(_)) {
            "; for an aggregate's enum of event types, derive `DomainEvent` instead"
        } else {
            ""
        };
        errors.error(
            input.ident.span(),
            format!(
                "missing `#[event(topic = \"...\")]`: every event type needs a stable topic, \
                 the name its events are stored under{hint}"
            ),
        );
    }
    errors.finish()?;
    let Some(EventAttrs {
        topic: Some(topic),
        version,
        discards,
        krate,
    }) = attrs
    else {
        unreachable!("errors were reported above");
    };

    let core = core_path(krate);
    let ident = &input.ident;
    // Only what the user wrote is spelled out, so the trait's defaults stay the defaults.
    let version = version.map(|(version, lit)| {
        let mut version = proc_macro2::Literal::u32_unsuffixed(version);
        version.set_span(lit.span());
        quote!(const SCHEMA_VERSION: u32 = #version;)
    });
    let discards = discards.map(|d| quote!(const DISCARDS: bool = #d;));
    Ok(quote! {
        #[automatically_derived]
        impl #core::Event for #ident {
            const TOPIC: &'static str = #topic;
            #version
            #discards
        }
    })
}
