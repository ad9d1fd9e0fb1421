//! Proc-macros that turn ferrolite's declarative tables into Rust.
//!
//! - [`wire_enum!`]: an enum whose variants have fixed wire names (provider names, operation
//!   names, routing strategies), with `ALL`, `as_str`, `from_wire`, `Display` and serde impls.
//! - [`str_map!`]: a translation table from one wire vocabulary to another (finish reasons,
//!   roles, tool_choice values), checked for duplicate keys at compile time.
//! - [`route_handler!`]: the axum handler glue that `build.rs` emits for each catalogue route.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use std::collections::BTreeSet;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{braced, bracketed, Attribute, Expr, Ident, LitStr, Token, Type, Visibility};

// ---------------------------------------------------------------------------------------------
// wire_enum!

struct WireEnum {
    attrs: Vec<Attribute>,
    vis: Visibility,
    name: Ident,
    variants: Vec<WireVariant>,
}

struct WireVariant {
    attrs: Vec<Attribute>,
    ident: Ident,
    wire: LitStr,
}

impl Parse for WireEnum {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        input.parse::<Token![enum]>()?;
        let name: Ident = input.parse()?;
        let body;
        braced!(body in input);
        let mut variants = Vec::new();
        while !body.is_empty() {
            let attrs = body.call(Attribute::parse_outer)?;
            let ident: Ident = body.parse()?;
            body.parse::<Token![=]>()?;
            let wire: LitStr = body.parse()?;
            variants.push(WireVariant { attrs, ident, wire });
            if body.is_empty() {
                break;
            }
            body.parse::<Token![,]>()?;
        }
        Ok(WireEnum { attrs, vis, name, variants })
    }
}

/// Declares a fieldless enum whose variants carry a fixed wire name.
///
/// ```ignore
/// wire_enum! {
///     /// Where a deployment's requests go.
///     pub enum Provider { OpenAi = "openai", Anthropic = "anthropic" }
/// }
/// assert_eq!(Provider::from_wire("openai"), Some(Provider::OpenAi));
/// ```
/// Two variants with the same wire name are a compile error.
#[proc_macro]
pub fn wire_enum(input: TokenStream) -> TokenStream {
    let def = syn::parse_macro_input!(input as WireEnum);
    match expand_wire_enum(&def) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn expand_wire_enum(def: &WireEnum) -> syn::Result<TokenStream2> {
    let mut seen = BTreeSet::new();
    for v in &def.variants {
        if !seen.insert(v.wire.value()) {
            return Err(syn::Error::new(v.wire.span(), format!("duplicate wire name {:?}", v.wire.value())));
        }
    }
    let WireEnum { attrs, vis, name, .. } = def;
    let idents: Vec<_> = def.variants.iter().map(|v| &v.ident).collect();
    let wires: Vec<_> = def.variants.iter().map(|v| &v.wire).collect();
    let vattrs: Vec<_> = def.variants.iter().map(|v| &v.attrs).collect();
    let count = def.variants.len();
    let expecting = format!("one of: {}", wires.iter().map(|w| w.value()).collect::<Vec<_>>().join(", "));
    Ok(quote! {
        #(#attrs)*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #vis enum #name {
            #( #(#vattrs)* #idents, )*
        }

        impl #name {
            /// Every variant, in declaration order.
            pub const ALL: [#name; #count] = [ #( #name::#idents ),* ];

            /// The wire name of this variant.
            pub const fn as_str(self) -> &'static str {
                match self { #( #name::#idents => #wires, )* }
            }

            /// The variant with this wire name, if any.
            pub fn from_wire(wire: &str) -> ::core::option::Option<Self> {
                match wire { #( #wires => ::core::option::Option::Some(#name::#idents), )* _ => ::core::option::Option::None }
            }

            /// The wire names, comma-separated, for error messages.
            pub const EXPECTING: &'static str = #expecting;
        }

        impl ::core::fmt::Display for #name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for #name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::core::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for #name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::core::result::Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                #name::from_wire(&s).ok_or_else(|| {
                    <D::Error as ::serde::de::Error>::custom(::std::format!(
                        "unknown {} {:?}, expected {}", stringify!(#name), s, #name::EXPECTING
                    ))
                })
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// str_map!

struct StrMap {
    attrs: Vec<Attribute>,
    vis: Visibility,
    name: Ident,
    out: Type,
    arms: Vec<MapArm>,
    default: Option<Expr>,
}

struct MapArm {
    keys: Vec<LitStr>,
    value: Expr,
}

impl Parse for StrMap {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        input.parse::<Token![fn]>()?;
        let name: Ident = input.parse()?;
        input.parse::<Token![->]>()?;
        let out: Type = input.parse()?;
        let body;
        braced!(body in input);
        let mut arms = Vec::new();
        let mut default = None;
        while !body.is_empty() {
            if body.peek(Token![_]) {
                body.parse::<Token![_]>()?;
                body.parse::<Token![=>]>()?;
                default = Some(body.parse()?);
            } else {
                let keys = Punctuated::<LitStr, Token![|]>::parse_separated_nonempty(&body)?;
                body.parse::<Token![=>]>()?;
                let value: Expr = body.parse()?;
                arms.push(MapArm { keys: keys.into_iter().collect(), value });
            }
            if body.is_empty() {
                break;
            }
            body.parse::<Token![,]>()?;
        }
        Ok(StrMap { attrs, vis, name, out, arms, default })
    }
}

/// Declares a translation table from wire strings to values.
///
/// ```ignore
/// str_map! {
///     /// Anthropic `stop_reason` -> OpenAI `finish_reason`.
///     pub fn finish_reason -> &'static str {
///         "end_turn" | "stop_sequence" => "stop",
///         "max_tokens" => "length",
///         _ => "stop",
///     }
/// }
/// ```
/// Without a `_` arm the function returns `Option<T>`; with one it returns `T`.
/// The same key twice is a compile error, as is an empty table.
#[proc_macro]
pub fn str_map(input: TokenStream) -> TokenStream {
    let def = syn::parse_macro_input!(input as StrMap);
    match expand_str_map(&def) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn expand_str_map(def: &StrMap) -> syn::Result<TokenStream2> {
    if def.arms.is_empty() {
        return Err(syn::Error::new(def.name.span(), "a str_map! needs at least one entry"));
    }
    let mut seen = BTreeSet::new();
    for key in def.arms.iter().flat_map(|a| &a.keys) {
        if !seen.insert(key.value()) {
            return Err(syn::Error::new(key.span(), format!("key {:?} appears twice in this table", key.value())));
        }
    }
    let StrMap { attrs, vis, name, out, .. } = def;
    let keys: Vec<_> = def.arms.iter().map(|a| &a.keys).collect();
    let values: Vec<_> = def.arms.iter().map(|a| &a.value).collect();
    let all_keys: Vec<_> = def.arms.iter().flat_map(|a| &a.keys).collect();
    let keys_const = format_ident!("{}_KEYS", name.to_string().to_uppercase());
    let keys_doc = format!("The keys `{name}` maps.");
    let body = match &def.default {
        Some(default) => quote! {
            #(#attrs)*
            #vis fn #name(key: &str) -> #out {
                match key { #( #(#keys)|* => #values, )* _ => #default }
            }
        },
        None => quote! {
            #(#attrs)*
            #vis fn #name(key: &str) -> ::core::option::Option<#out> {
                match key { #( #(#keys)|* => ::core::option::Option::Some(#values), )* _ => ::core::option::Option::None }
            }
        },
    };
    Ok(quote! {
        #body
        #[doc = #keys_doc]
        #[allow(dead_code)]
        #vis const #keys_const: &[&str] = &[ #( #all_keys ),* ];
    })
}

// ---------------------------------------------------------------------------------------------
// route_handler!

struct RouteHandler {
    name: Ident,
    op: Ident,
    params: Vec<Ident>,
}

impl Parse for RouteHandler {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut name = None;
        let mut op = None;
        let mut params = Vec::new();
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            match key.to_string().as_str() {
                "name" => name = Some(input.parse()?),
                "op" => op = Some(input.parse()?),
                "params" => {
                    let list;
                    bracketed!(list in input);
                    params = Punctuated::<Ident, Token![,]>::parse_terminated(&list)?.into_iter().collect();
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown key `{other}`, expected name, op or params"),
                    ))
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![;]>()?;
        }
        let missing = |what: &str| syn::Error::new(Span::call_site(), format!("route_handler! needs `{what} = ...`"));
        Ok(RouteHandler { name: name.ok_or_else(|| missing("name"))?, op: op.ok_or_else(|| missing("op"))?, params })
    }
}

/// Emits one axum handler for a catalogue route.
///
/// ```ignore
/// route_handler! { name = h_retrieve_file; op = RetrieveFile; params = [file_id] }
/// ```
/// The handler extracts the service prefix (`workspace`, `service_id`) and the route's own path
/// parameters as a typed tuple, and hands them with the whole request to
/// `crate::http::dispatch::serve_request`, which reads the body as the route's kind says. Schema
/// checks run there, after auth.
#[proc_macro]
pub fn route_handler(input: TokenStream) -> TokenStream {
    let def = syn::parse_macro_input!(input as RouteHandler);
    let RouteHandler { name, op, params } = def;
    let types = std::iter::repeat_n(quote!(::std::string::String), params.len() + 2);
    let param_names: Vec<String> = params.iter().map(|p| p.to_string()).collect();
    quote! {
        async fn #name(
            ::axum::extract::State(state): ::axum::extract::State<crate::http::AppState>,
            ::axum::extract::Path((workspace, service_id, #(#params,)*)): ::axum::extract::Path<( #(#types,)* )>,
            request: ::axum::extract::Request,
        ) -> ::axum::response::Response {
            crate::http::dispatch::serve_request(
                state,
                crate::catalogue::Operation::#op,
                workspace,
                service_id,
                ::std::vec![ #( (#param_names, #params) ),* ],
                request,
            )
            .await
        }
    }
    .into()
}
