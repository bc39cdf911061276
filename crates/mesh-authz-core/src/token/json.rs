//! One-pass reading of the JSON objects in a JWS (protected header, claims set): member names are
//! borrowed from the input, only the members a caller reads are built, and a duplicate member name
//! anywhere at the top level refuses the whole object.
//!
//! `serde_json::Map` silently keeps the last of two duplicates; two parsers reading different values
//! of one claim is a classic bypass, so a duplicate is an error here.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// What a caller does with each member of an object, in input order.
pub(crate) trait Members<'de> {
    /// Reads the value of member `name`. Must take the value from `map` exactly once
    /// (`map.next_value::<Skip>()` to skip it).
    fn member<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error>;
}

/// Reads `bytes` as one JSON object (nothing after it), handing every member to `members`.
/// Returns `false` for anything else: invalid JSON, not an object, a duplicate member name, or an
/// error from `members`.
pub(crate) fn read_object<'de, M: Members<'de>>(bytes: &'de [u8], members: &mut M) -> bool {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let read = de.deserialize_map(ObjectVisitor {
        members,
        marker: PhantomData,
    });
    read.is_ok() && de.end().is_ok()
}

struct ObjectVisitor<'m, 'de, M> {
    members: &'m mut M,
    marker: PhantomData<&'de ()>,
}

impl<'de, M: Members<'de>> Visitor<'de> for ObjectVisitor<'_, 'de, M> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut names: Vec<Cow<'de, str>> = Vec::new();
        while let Some(Text::Str(name)) = map.next_key::<Text<'de>>()? {
            self.members.member(&name, &mut map)?;
            names.push(name);
        }
        // Sorted once at the end: n log n however many members a hostile token carries.
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(de::Error::custom("duplicate member"));
        }
        Ok(())
    }
}

/// The visitor methods for JSON scalars a reader does not take (booleans, numbers, `null`): each
/// yields `$other`.
macro_rules! scalars_yield {
    ($ty:ty, $other:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<$ty, E> {
            Ok($other)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<$ty, E> {
            Ok($other)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<$ty, E> {
            Ok($other)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<$ty, E> {
            Ok($other)
        }
        fn visit_unit<E: de::Error>(self) -> Result<$ty, E> {
            Ok($other)
        }
        fn visit_none<E: de::Error>(self) -> Result<$ty, E> {
            Ok($other)
        }
    };
}

/// A JSON value read and dropped, held to the same rules as building a `serde_json::Value`
/// (an out-of-range number such as `1e400` is an error). serde's `IgnoredAny` would accept it, so
/// whether a token parses would depend on which claims are kept.
pub(crate) struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    scalars_yield!(Skip, Skip);
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

/// A JSON value read as a string when it is one (borrowed from the input unless it has escapes),
/// or `Other` for any other JSON type, which the caller reports as malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Text<'de> {
    /// A JSON string.
    Str(Cow<'de, str>),
    /// Any other JSON value (skipped).
    Other,
}

impl<'de> Text<'de> {
    /// The string, or `None` for another type.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Text::Str(s) => Some(s),
            Text::Other => None,
        }
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

/// Everything but a string is `Text::Other`; arrays and objects are consumed and dropped.
impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    scalars_yield!(Text<'de>, Text::Other);
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
        Ok(Text::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(Text::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
        Ok(Text::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Text<'de>, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Text::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text<'de>, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Text::Other)
    }
}

/// A string, or an array whose elements are all strings (`aud`, `scp`); `Other` for anything else,
/// including an array with a non-string element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Texts<'de> {
    /// A JSON string.
    One(Cow<'de, str>),
    /// An array of strings.
    Many(Vec<Cow<'de, str>>),
    /// Any other JSON value.
    Other,
}

impl<'de> Deserialize<'de> for Texts<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Texts<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            scalars_yield!(Texts<'de>, Texts::Other);
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Texts<'de>, A::Error> {
                let mut items = Vec::new();
                let mut all_strings = true;
                while let Some(item) = seq.next_element::<Text<'de>>()? {
                    match item {
                        Text::Str(s) if all_strings => items.push(s),
                        _ => all_strings = false,
                    }
                }
                Ok(if all_strings {
                    Texts::Many(items)
                } else {
                    Texts::Other
                })
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Texts<'de>, E> {
                Ok(Texts::One(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Texts<'de>, E> {
                Ok(Texts::One(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Texts<'de>, E> {
                Ok(Texts::One(Cow::Owned(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Texts<'de>, A::Error> {
                while map.next_entry::<Skip, Skip>()?.is_some() {}
                Ok(Texts::Other)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects member names and string values, skipping the rest.
    #[derive(Default)]
    struct Collect(Vec<(String, Option<String>)>);

    impl<'de> Members<'de> for Collect {
        fn member<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
            let v: Text<'de> = map.next_value()?;
            self.0
                .push((name.to_string(), v.as_str().map(str::to_string)));
            Ok(())
        }
    }

    fn read(json: &str) -> Option<Vec<(String, Option<String>)>> {
        let mut c = Collect::default();
        read_object(json.as_bytes(), &mut c).then_some(c.0)
    }

    #[test]
    fn members_arrive_in_order_with_escaped_names_and_values_decoded() {
        let got = read(r#"{"a":"x","b\u0031":"y\n","c":[1,{"d":2}],"e":null}"#).unwrap();
        let want = [
            ("a", Some("x")),
            ("b1", Some("y\n")),
            ("c", None),
            ("e", None),
        ];
        assert_eq!(got.len(), want.len());
        for ((n, v), (wn, wv)) in got.iter().zip(want) {
            assert_eq!((n.as_str(), v.as_deref()), (wn, wv));
        }
    }

    #[test]
    fn duplicates_non_objects_and_trailing_input_are_refused() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"b":2,"a":3}"#,
            // The same name once escaped: still a duplicate.
            r#"{"a":1,"\u0061":2}"#,
            r#"[1]"#,
            r#""a""#,
            r#"{"a":1} x"#,
            r#"{"a":1}{}"#,
            r#"{"a":}"#,
            "",
        ] {
            assert!(read(bad).is_none(), "{bad}");
        }
        // Skipped values are held to serde_json::Value's rules: out-of-range numbers, lone
        // surrogates and over-deep nesting are errors wherever they are.
        for bad in [
            r#"{"a":1e400}"#,
            r#"{"a":[{"b":-1e400}]}"#,
            r#"{"a":"\ud800"}"#,
        ] {
            assert!(read(bad).is_none(), "{bad}");
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "{bad}"
            );
        }
        let deep = format!(r#"{{"a":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        assert!(read(&deep).is_none());
        // Nested duplicates belong to the nested value's own reader.
        assert!(read(r#"{"a":{"b":1,"b":2}}"#).is_some());
        assert!(read(" {} ").is_some());
    }

    #[test]
    fn texts_accept_a_string_or_an_array_of_strings_only() {
        fn t(json: &str) -> Texts<'_> {
            serde_json::from_str(json).unwrap()
        }
        assert_eq!(t(r#""a""#), Texts::One("a".into()));
        assert_eq!(t(r#"["a","b"]"#), Texts::Many(vec!["a".into(), "b".into()]));
        assert_eq!(t("[]"), Texts::Many(vec![]));
        for other in [
            r#"["a",1]"#,
            "1",
            "null",
            "true",
            r#"{"a":"b"}"#,
            r#"[["a"]]"#,
        ] {
            assert_eq!(t(other), Texts::Other, "{other}");
        }
    }
}
