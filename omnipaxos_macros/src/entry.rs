//! `#[derive(Entry)]`: reads the optional `#[snapshot(Type)]` attribute and
//! writes the `Entry` impl. Every user mistake becomes a spanned compile error.

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::quote;
use syn::{
    Attribute, Data, DeriveInput, Error, GenericParam, Generics, Meta, Result, Token, Type,
    parse::Parser, punctuated::Punctuated,
};

/// The name of the helper attribute, as registered in `lib.rs`.
const ATTR: &str = "snapshot";

/// Expands `#[derive(Entry)]` on `input`, or returns the compile errors that explain why not.
pub(crate) fn derive(input: TokenStream) -> TokenStream {
    syn::parse2::<DeriveInput>(input)
        .and_then(|input| expand(&input))
        .unwrap_or_else(Error::into_compile_error)
}

fn expand(input: &DeriveInput) -> Result<TokenStream> {
    let snapshot = snapshot_type(input)?;
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();

    let snapshot_ty = match &snapshot {
        Some(ty) => quote!(#ty),
        None => quote!(::omnipaxos::storage::NoSnapshot),
    };

    // A generic type is `Clone` and `Debug` only under bounds we cannot see
    // (a derived `Clone` needs `T: Clone`, a hand-written one may need less),
    // so the impl asks for exactly the supertraits instead of guessing
    // per-parameter bounds. Non-generic types get no extra bounds, so a
    // missing `Clone` is reported as the plain trait error it is.
    let mut where_clause = where_clause.cloned();
    if !input.generics.params.is_empty() {
        let predicates = &mut where_clause
            .get_or_insert_with(|| syn::parse_quote!(where))
            .predicates;
        predicates.push(syn::parse_quote!(Self: ::core::clone::Clone + ::core::fmt::Debug));
        // A snapshot type built from the entry's parameters (`Sum<T>`)
        // usually implements `Snapshot` under bounds on them, so the impl
        // asks for it. Any other snapshot type usually implements it for
        // every entry, bounded by `Entry` itself (as `NoSnapshot` does); a
        // bound would then refer back to this very impl and overflow the
        // trait solver, so it is left out.
        if let Some(ty) = snapshot
            .as_ref()
            .filter(|ty| mentions_params(ty, &input.generics))
        {
            predicates.push(syn::parse_quote!(#ty: ::omnipaxos::storage::Snapshot<Self>));
        }
    }

    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::omnipaxos::storage::Entry for #name #ty_generics #where_clause {
            type Snapshot = #snapshot_ty;
        }
    })
}

/// Returns the type named by `#[snapshot(Type)]` on the item, `None` if the
/// attribute is absent, or every misuse found, combined into one error.
fn snapshot_type(input: &DeriveInput) -> Result<Option<Type>> {
    let mut errors = Errors::default();
    let mut found: Option<Type> = None;

    for attr in snapshot_attrs(&input.attrs) {
        match parse_snapshot_attr(attr) {
            Ok(_) if found.is_some() => errors.push(Error::new_spanned(
                attr,
                "`#[snapshot]` is given more than once; an entry has one snapshot type",
            )),
            Ok(ty) => found = Some(ty),
            Err(e) => errors.push(e),
        }
    }

    // The compiler accepts a registered helper attribute anywhere inside the
    // item, so without this check `#[snapshot(..)]` on a field would be
    // silently ignored and the entry would quietly get `NoSnapshot`.
    let misplaced = |attrs: &[Attribute], place: &str, errors: &mut Errors| {
        for attr in snapshot_attrs(attrs) {
            errors.push(Error::new_spanned(
                attr,
                format!(
                    "`#[snapshot(..)]` belongs on the type that derives `Entry`, not on {place}"
                ),
            ));
        }
    };
    match &input.data {
        Data::Struct(data) => {
            for field in &data.fields {
                misplaced(&field.attrs, "a field", &mut errors);
            }
        }
        Data::Enum(data) => {
            for variant in &data.variants {
                misplaced(&variant.attrs, "a variant", &mut errors);
                for field in &variant.fields {
                    misplaced(&field.attrs, "a field", &mut errors);
                }
            }
        }
        Data::Union(data) => {
            for field in &data.fields.named {
                misplaced(&field.attrs, "a field", &mut errors);
            }
        }
    }

    errors.finish()?;
    Ok(found)
}

/// Parses one `#[snapshot(..)]` attribute into the type it names.
fn parse_snapshot_attr(attr: &Attribute) -> Result<Type> {
    let list = match &attr.meta {
        Meta::List(list) => list,
        Meta::Path(_) => {
            return Err(Error::new_spanned(
                attr,
                "`#[snapshot]` needs the snapshot type: write `#[snapshot(MySnapshot)]`",
            ));
        }
        Meta::NameValue(_) => {
            return Err(Error::new_spanned(
                attr,
                "expected `#[snapshot(MySnapshot)]`, not the `#[snapshot = ..]` form",
            ));
        }
    };

    let types = Punctuated::<Type, Token![,]>::parse_terminated
        .parse2(list.tokens.clone())
        .map_err(|_| {
            Error::new_spanned(
                &list.tokens,
                "expected a snapshot type, e.g. `#[snapshot(MySnapshot)]`",
            )
        })?;

    let mut types = types.into_iter();
    let (Some(ty), None) = (types.next(), types.next()) else {
        let message = "`#[snapshot(..)]` takes exactly one type, e.g. `#[snapshot(MySnapshot)]`";
        return Err(if list.tokens.is_empty() {
            Error::new_spanned(attr, message)
        } else {
            Error::new_spanned(&list.tokens, message)
        });
    };

    // These parse as types but can never be the concrete type an associated
    // type needs; saying so here beats the compiler's generic complaint.
    if matches!(ty, Type::Infer(_) | Type::ImplTrait(_)) {
        return Err(Error::new_spanned(
            &ty,
            "name a concrete snapshot type; it cannot be inferred or written as `impl Trait`",
        ));
    }
    Ok(ty)
}

/// Whether `ty` names a type or const parameter of `generics`, or `Self`.
fn mentions_params(ty: &Type, generics: &Generics) -> bool {
    let params: Vec<&Ident> = generics
        .params
        .iter()
        .filter_map(|param| match param {
            GenericParam::Type(param) => Some(&param.ident),
            GenericParam::Const(param) => Some(&param.ident),
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    // A token walk rather than a syntax-tree visit: it sees every identifier,
    // including those inside macro invocations and const expressions.
    fn walk(tokens: TokenStream, params: &[&Ident]) -> bool {
        tokens.into_iter().any(|token| match token {
            TokenTree::Ident(ident) => {
                ident == "Self" || params.iter().any(|param| **param == ident)
            }
            TokenTree::Group(group) => walk(group.stream(), params),
            TokenTree::Punct(_) | TokenTree::Literal(_) => false,
        })
    }
    walk(quote!(#ty), &params)
}

fn snapshot_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|attr| attr.path().is_ident(ATTR))
}

/// Collects errors so that one expansion reports every mistake at once.
#[derive(Default)]
struct Errors(Option<Error>);

impl Errors {
    fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(input: TokenStream) -> String {
        derive(input).to_string()
    }

    #[test]
    fn plain_struct_gets_no_snapshot_and_no_extra_bounds() {
        let expected = quote! {
            #[automatically_derived]
            impl ::omnipaxos::storage::Entry for KeyValue {
                type Snapshot = ::omnipaxos::storage::NoSnapshot;
            }
        };
        assert_eq!(
            expand_str(quote!(
                struct KeyValue {
                    key: String,
                    value: u64,
                }
            )),
            expected.to_string()
        );
    }

    #[test]
    fn generic_type_keeps_its_where_clause_and_adds_supertrait_and_snapshot_bounds() {
        let expected = quote! {
            #[automatically_derived]
            impl<T, const N: usize> ::omnipaxos::storage::Entry for Batch<T, N>
            where
                T: Copy,
                Self: ::core::clone::Clone + ::core::fmt::Debug,
                Sum<T>: ::omnipaxos::storage::Snapshot<Self>
            {
                type Snapshot = Sum<T>;
            }
        };
        let input = quote! {
            #[snapshot(Sum<T>)]
            struct Batch<T, const N: usize> where T: Copy { items: [T; N] }
        };
        assert_eq!(expand_str(input), expected.to_string());
    }

    #[test]
    fn generic_type_with_a_snapshot_type_that_ignores_its_parameters_gets_no_snapshot_bound() {
        let expected = quote! {
            #[automatically_derived]
            impl<'a, T> ::omnipaxos::storage::Entry for Borrowed<'a, T>
            where
                Self: ::core::clone::Clone + ::core::fmt::Debug
            {
                type Snapshot = Len<'a>;
            }
        };
        let input = quote! {
            #[snapshot(Len<'a>)]
            struct Borrowed<'a, T>(&'a T);
        };
        assert_eq!(expand_str(input), expected.to_string());
    }

    #[test]
    fn snapshot_types_that_mention_a_parameter_or_self_are_recognised() {
        let generics: Generics = syn::parse_quote!(<'a, T, const N: usize>);
        let mentions = |ty: Type| mentions_params(&ty, &generics);
        assert!(mentions(syn::parse_quote!(Sum<T>)));
        assert!(mentions(syn::parse_quote!(Vec<(u8, [T; 2])>)));
        assert!(mentions(syn::parse_quote!(Window<{ N + 1 }>)));
        assert!(mentions(syn::parse_quote!(Boxed<Self>)));
        assert!(!mentions(syn::parse_quote!(Len<'a>)));
        assert!(!mentions(syn::parse_quote!(
            ::omnipaxos::storage::NoSnapshot
        )));
        assert!(
            !mentions(syn::parse_quote!(Tee)),
            "prefix of a parameter name is not the parameter"
        );
    }

    #[test]
    fn every_misuse_in_one_item_is_reported() {
        let input = quote! {
            #[snapshot]
            #[snapshot(A, B)]
            struct KeyValue { #[snapshot(C)] key: String }
        };
        let output = expand_str(input);
        assert_eq!(output.matches("compile_error").count(), 3, "{output}");
        assert!(!output.contains("impl"), "no impl on error: {output}");
    }
}
