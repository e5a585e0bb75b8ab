//! Placeholder: replaced by the real implementation.
use proc_macro::TokenStream;

#[proc_macro_attribute]
pub fn cached(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

#[proc_macro_attribute]
pub fn invalidates(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
