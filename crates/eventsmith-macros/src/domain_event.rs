//! `#[derive(DomainEvent)]`: an aggregate's event enum, one variant per event type.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, Type};

use crate::attr::{Errors, EventAttrs, Place, generics};
use crate::krate::core_path;

/// One variant: its name, the event type it wraps, and the span to blame for it.
struct Variant<'a> {
    ident: &'a Ident,
    ty: &'a Type,
    span: Span,
}

pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    let data = match &input.data {
        Data::Enum(data) => data,
        Data::Struct(s) => {
            return Err(syn::Error::new(
                s.struct_token.span,
                "`DomainEvent` derives on an enum with one variant per event type; \
                 for a single event type, derive `Event`",
            ));
        }
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span,
                "`DomainEvent` derives on an enum with one variant per event type",
            ));
        }
    };
    let mut errors = Errors::default();
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        errors.spanned(
            generics(&input.generics),
            "an event enum cannot be generic: each of its topics names one concrete type",
        );
    }
    let attrs = EventAttrs::parse(&input.attrs, Place::EventEnum).unwrap_or_else(|e| {
        errors.push(e);
        EventAttrs::default()
    });
    if data.variants.is_empty() {
        errors.error(
            input.ident.span(),
            "an event enum needs at least one variant, each wrapping an event type",
        );
    }

    let mut variants = Vec::new();
    // The first variant to wrap each type (compared as written), to reject a second one.
    let mut wrapped_by: HashMap<String, &Ident> = HashMap::new();
    for variant in &data.variants {
        let name = &variant.ident;
        for attr in variant.attrs.iter().filter(|a| a.path().is_ident("event")) {
            errors.spanned(
                attr,
                "`#[event]` has no options on a variant: write `#[event(topic = \"...\")]` \
                 on the event type the variant wraps",
            );
        }
        let ty = match &variant.fields {
            Fields::Unnamed(fields) if fields.unnamed.len() == 1 => &fields.unnamed[0].ty,
            Fields::Unnamed(fields) if fields.unnamed.is_empty() => {
                errors.spanned(
                    fields,
                    format!(
                        "variant `{name}` must wrap exactly one event type: `{name}(EventType)`"
                    ),
                );
                continue;
            }
            Fields::Unnamed(fields) => {
                let extra: Vec<_> = fields.unnamed.iter().skip(1).collect();
                errors.spanned(
                    quote!(#(#extra)*),
                    format!(
                        "variant `{name}` must wrap exactly one event type: `{name}(EventType)`; \
                         put the other fields inside that type"
                    ),
                );
                continue;
            }
            Fields::Named(fields) => {
                errors.spanned(
                    fields,
                    format!(
                        "variant `{name}` must be a tuple variant wrapping one event type: \
                         `{name}(EventType)`; move these fields into a struct that derives `Event`"
                    ),
                );
                continue;
            }
            Fields::Unit => {
                errors.error(
                    name.span(),
                    format!(
                        "variant `{name}` must wrap its event type: `{name}({name})`, with a \
                         `struct {name};` that derives `Event`"
                    ),
                );
                continue;
            }
        };
        let written = ty.to_token_stream().to_string();
        if let Some(first) = wrapped_by.get(&written) {
            errors.spanned(
                ty,
                format!(
                    "variant `{first}` already wraps `{written}`; each event type belongs to \
                     exactly one variant, which its `From` conversion and its topic lead to"
                ),
            );
            continue;
        }
        wrapped_by.insert(written, name);
        variants.push(Variant {
            ident: name,
            ty,
            span: name.span(),
        });
    }
    errors.finish()?;

    let core = core_path(attrs.krate);
    let serde = quote!(#core::__private::serde);
    let enum_ident = &input.ident;
    let names: Vec<_> = variants.iter().map(|v| v.ident).collect();
    // `<T as Event>` is spanned at `T`, so that a wrapped type which is not an event is
    // reported where it is written.
    let as_event: Vec<_> = variants
        .iter()
        .map(|v| {
            let ty = v.ty;
            quote_spanned!(ty.span()=> <#ty as #core::Event>)
        })
        .collect();
    let from_impls = variants.iter().map(|Variant { ident, ty, .. }| {
        quote! {
            #[automatically_derived]
            #[allow(deprecated)]
            impl ::core::convert::From<#ty> for #enum_ident {
                fn from(event: #ty) -> Self {
                    Self::#ident(event)
                }
            }
        }
    });
    let types = variants.iter().map(|v| v.ty);
    let topic_checks = topic_checks(enum_ident, &variants, &as_event);

    Ok(quote! {
        #(#from_impls)*

        // Serialized as the bare inner event: the topic, stored beside it, says which it is.
        #[automatically_derived]
        #[allow(deprecated)]
        impl #serde::Serialize for #enum_ident {
            fn serialize<__S>(
                &self,
                serializer: __S,
            ) -> ::core::result::Result<__S::Ok, __S::Error>
            where
                __S: #serde::Serializer,
            {
                match self {
                    #(Self::#names(event) => #serde::Serialize::serialize(event, serializer),)*
                }
            }
        }

        #[automatically_derived]
        #[allow(deprecated)]
        impl #core::DomainEvent for #enum_ident {
            fn topic(&self) -> &'static str {
                match self {
                    #(Self::#names(_) => #as_event::TOPIC,)*
                }
            }
            fn schema_version(&self) -> u32 {
                match self {
                    #(Self::#names(_) => #as_event::SCHEMA_VERSION,)*
                }
            }
            fn is_discard(&self) -> bool {
                match self {
                    #(Self::#names(_) => #as_event::DISCARDS,)*
                }
            }
        }

        #[automatically_derived]
        #[allow(deprecated)]
        impl #core::EventTypes for #enum_ident {
            fn visit<__V: #core::EventTypeVisitor<Self>>(visitor: &mut __V) {
                #(visitor.visit::<#types>();)*
            }
        }

        #topic_checks
    })
}

/// Compile-time checks that no two variants wrap types with the same topic: a mapper could
/// not tell their events apart. The topics are constants of the wrapped types, which a derive
/// cannot read, so the compiler compares them while it evaluates a constant; each failing
/// check is spanned at the later of the two variants.
fn topic_checks(
    enum_ident: &Ident,
    variants: &[Variant<'_>],
    as_event: &[TokenStream],
) -> TokenStream {
    let mut checks = Vec::new();
    for (later, variant) in variants.iter().enumerate() {
        for earlier in 0..later {
            let message = format!(
                "variants `{}` and `{}` of `{enum_ident}` wrap event types with the same topic; \
                 a topic must name exactly one event type",
                variants[earlier].ident, variant.ident
            );
            let (a, b) = (&as_event[earlier], &as_event[later]);
            checks.push(quote_spanned! {variant.span=>
                ::core::assert!(!same_topic(#a::TOPIC, #b::TOPIC), #message);
            });
        }
    }
    if checks.is_empty() {
        return TokenStream::new();
    }
    quote! {
        #[allow(deprecated)]
        const _: () = {
            const fn same_topic(a: &str, b: &str) -> bool {
                let (a, b) = (a.as_bytes(), b.as_bytes());
                if a.len() != b.len() {
                    return false;
                }
                let mut i = 0;
                while i < a.len() {
                    if a[i] != b[i] {
                        return false;
                    }
                    i += 1;
                }
                true
            }
            #(#checks)*
        };
    }
}
