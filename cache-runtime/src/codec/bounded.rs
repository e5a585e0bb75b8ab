//! Decoding whose advance reservations are bounded by the input.
//!
//! serde's collections reserve room, before reading any element, for as many
//! elements as the format's length prefix announces
//! ([`SeqAccess::size_hint`], [`MapAccess::size_hint`]), up to 1 MiB whatever
//! the length of the input. postcard, rmp-serde and bincode take the hint
//! straight from the bytes (postcard checks it against the remaining input for
//! sequences, not for maps), so a forged prefix in a value of a few bytes
//! reserves up to 1 MiB, far more than a small maximum value size.
//!
//! [`Bounded`] wraps a format's [`Deserializer`] and passes a size hint on
//! only while the input can hold that many elements. In each format used with
//! it, every element of a sequence takes at least one byte of input and every
//! map entry at least two, so the collections of a genuine value together hold
//! at most one element per input byte. The hints of one decode draw on a
//! single [`Budget`] of that many elements: a hint within what is left is
//! passed on and deducted, any other hint becomes `None`, and the collection
//! then grows as its elements really arrive. A genuine value is never refused
//! a hint, except where elements take no bytes at all (units, and zero-sized
//! map values in postcard and bincode), which only lose the reservation.
//! What a decode reserves in advance is thus at most one element per input
//! byte, times the size of an element in memory.
//!
//! [`Bounded`] also asks for borrowed strings and byte slices where an owned
//! one is requested, so that the format checks the announced length against
//! the input before anything is copied (bincode allocates an owned string's
//! announced length before reading it); the visitor then copies exactly the
//! bytes that are there.
//!
//! [`Bounded`] also bounds nesting: a value nested more than [`MAX_DEPTH`]
//! levels deep (an `Option` in an `Option`…, a recursive type) is refused
//! with an error before the format's recursion can overflow the stack.
//!
//! Everything here is generic and inlined, with no allocation and no dynamic
//! dispatch: a decode pays one [`Cell`] read and write per collection, and
//! two per value for the depth.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// Deepest nesting a decoded value may have (as serde_json's limit).
pub(crate) const MAX_DEPTH: u32 = 128;

/// How many more collection elements the decode may reserve room for, and
/// how deep it is now.
struct Budget(Cell<usize>, Cell<u32>);

impl Budget {
    /// A budget of one element per byte of an input of `input_len` bytes.
    #[inline]
    fn new(input_len: usize) -> Self {
        Budget(Cell::new(input_len), Cell::new(0))
    }

    /// One level deeper, until the returned guard drops; an error past
    /// [`MAX_DEPTH`].
    #[inline]
    fn enter<E: de::Error>(&self) -> Result<Depth<'_>, E> {
        let depth = self.1.get() + 1;
        if depth > MAX_DEPTH {
            return Err(E::custom(format_args!(
                "value nested more than {MAX_DEPTH} levels deep"
            )));
        }
        self.1.set(depth);
        Ok(Depth(&self.1))
    }

    /// Passes on a hint of `hint` elements that take at least `bytes_each`
    /// bytes of input each, if what is left of the budget covers them.
    #[inline]
    fn claim(&self, hint: Option<usize>, bytes_each: usize) -> Option<usize> {
        let n = hint?;
        let left = self.0.get();
        let cost = n.checked_mul(bytes_each).filter(|&c| c <= left)?;
        self.0.set(left - cost);
        Some(n)
    }
}

/// A level of nesting, left when dropped.
struct Depth<'a>(&'a Cell<u32>);

impl Drop for Depth<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Decodes a `T` from `de` with size hints bounded by an input of `input_len` bytes.
#[inline]
pub(crate) fn deserialize<'de, T, D>(de: D, input_len: usize) -> Result<T, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Seed::new(input_len).deserialize(de)
}

/// A [`DeserializeSeed`] for `T` that decodes through [`Bounded`], for
/// formats whose entry points take a seed.
pub(crate) struct Seed<T> {
    input_len: usize,
    value: PhantomData<fn() -> T>,
}

impl<T> Seed<T> {
    /// A seed for an input of `input_len` bytes.
    #[inline]
    pub(crate) fn new(input_len: usize) -> Self {
        Seed {
            input_len,
            value: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Seed<T> {
    type Value = T;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<T, D::Error> {
        let budget = Budget::new(self.input_len);
        T::deserialize(Bounded {
            de,
            budget: &budget,
        })
    }
}

/// A [`Deserializer`] whose collections' size hints draw on a [`Budget`].
struct Bounded<'b, D> {
    de: D,
    budget: &'b Budget,
}

/// Wraps a visitor, a seed or an access so that what it hands on is bounded too.
struct Wrap<'b, X> {
    inner: X,
    budget: &'b Budget,
}

impl<'b, X> Wrap<'b, X> {
    #[inline]
    fn new(inner: X, budget: &'b Budget) -> Self {
        Wrap { inner, budget }
    }
}

/// Forwards `deserialize_*` methods, wrapping the visitor.
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*))*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let _depth = self.budget.enter::<D::Error>()?;
            self.de.$method($($arg,)* Wrap::new(visitor, self.budget))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<'_, D> {
    type Error = D::Error;

    forward! {
        deserialize_any()
        deserialize_bool()
        deserialize_i8()
        deserialize_i16()
        deserialize_i32()
        deserialize_i64()
        deserialize_i128()
        deserialize_u8()
        deserialize_u16()
        deserialize_u32()
        deserialize_u64()
        deserialize_u128()
        deserialize_f32()
        deserialize_f64()
        deserialize_char()
        deserialize_str()
        deserialize_bytes()
        deserialize_option()
        deserialize_unit()
        deserialize_unit_struct(name: &'static str)
        deserialize_newtype_struct(name: &'static str)
        deserialize_seq()
        deserialize_tuple(len: usize)
        deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_map()
        deserialize_struct(name: &'static str, fields: &'static [&'static str])
        deserialize_enum(name: &'static str, variants: &'static [&'static str])
        deserialize_identifier()
        deserialize_ignored_any()
    }

    /// Asks for a borrowed string, whose length the format checks first.
    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let _depth = self.budget.enter::<D::Error>()?;
        self.de.deserialize_str(Wrap::new(visitor, self.budget))
    }

    /// Asks for borrowed bytes, whose length the format checks first.
    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let _depth = self.budget.enter::<D::Error>()?;
        self.de.deserialize_bytes(Wrap::new(visitor, self.budget))
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// Forwards `visit_*` methods that carry a plain value.
macro_rules! visit {
    ($($method:ident($ty:ty))*) => {$(
        #[inline]
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    visit! {
        visit_bool(bool)
        visit_i8(i8)
        visit_i16(i16)
        visit_i32(i32)
        visit_i64(i64)
        visit_i128(i128)
        visit_u8(u8)
        visit_u16(u16)
        visit_u32(u32)
        visit_u64(u64)
        visit_u128(u128)
        visit_f32(f32)
        visit_f64(f64)
        visit_char(char)
        visit_str(&str)
        visit_borrowed_str(&'de str)
        visit_string(String)
        visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8])
        visit_byte_buf(Vec<u8>)
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Bounded {
            de,
            budget: self.budget,
        })
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Bounded {
            de,
            budget: self.budget,
        })
    }

    #[inline]
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Wrap::new(seq, self.budget))
    }

    #[inline]
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Wrap::new(map, self.budget))
    }

    #[inline]
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Wrap::new(data, self.budget))
    }
}

/// A seed whose deserializer is [`Bounded`].
struct SeedOf<'b, S>(Wrap<'b, S>);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for SeedOf<'_, S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.0.inner.deserialize(Bounded {
            de,
            budget: self.0.budget,
        })
    }
}

impl<'b, S> SeedOf<'b, S> {
    #[inline]
    fn new(seed: S, budget: &'b Budget) -> Self {
        SeedOf(Wrap::new(seed, budget))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(SeedOf::new(seed, self.budget))
    }

    /// Every element takes at least one byte.
    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.budget.claim(self.inner.size_hint(), 1)
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(SeedOf::new(seed, self.budget))
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(SeedOf::new(seed, self.budget))
    }

    #[inline]
    fn next_entry_seed<K: DeserializeSeed<'de>, V: DeserializeSeed<'de>>(
        &mut self,
        kseed: K,
        vseed: V,
    ) -> Result<Option<(K::Value, V::Value)>, A::Error> {
        self.inner.next_entry_seed(
            SeedOf::new(kseed, self.budget),
            SeedOf::new(vseed, self.budget),
        )
    }

    /// Every entry takes at least two bytes: a key and a value.
    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.budget.claim(self.inner.size_hint(), 2)
    }
}

impl<'b, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<'b, A> {
    type Error = A::Error;
    type Variant = Wrap<'b, A::Variant>;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let budget = self.budget;
        let (value, variant) = self.inner.variant_seed(SeedOf::new(seed, budget))?;
        Ok((value, Wrap::new(variant, budget)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner
            .newtype_variant_seed(SeedOf::new(seed, self.budget))
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner
            .tuple_variant(len, Wrap::new(visitor, self.budget))
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner
            .struct_variant(fields, Wrap::new(visitor, self.budget))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_draw_on_one_budget() {
        let b = Budget::new(10);
        assert_eq!(b.claim(None, 1), None);
        assert_eq!(b.claim(Some(11), 1), None);
        assert_eq!(b.claim(Some(6), 1), Some(6));
        assert_eq!(b.claim(Some(3), 2), None);
        assert_eq!(b.claim(Some(2), 2), Some(2));
        assert_eq!(b.claim(Some(0), 1), Some(0));
        assert_eq!(b.claim(Some(1), 1), None);
        assert_eq!(b.claim(Some(usize::MAX), 2), None);
    }
}
