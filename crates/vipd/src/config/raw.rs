//! The file as TOML: a tree in which every key and value knows where it starts, and
//! readers that report a wrong type or an unknown key and carry on, so that one pass finds
//! every problem (serde's derive would stop at the first).

use std::{ops::Range, time::Duration};

use toml_edit::{ImDocument, Item, TableLike, Value};

use super::{duration::parse_duration, error::Reporter, suggest};

/// Parses the TOML syntax; a syntax error is reported with its location.
pub(crate) fn parse_document<'t>(
    text: &'t str,
    r: &mut Reporter<'_>,
) -> Option<ImDocument<&'t str>> {
    match ImDocument::parse(text) {
        Ok(doc) => Some(doc),
        Err(e) => {
            let message = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            r.error(
                e.span().map(|s| s.start),
                format!("invalid TOML: {message}"),
            );
            None
        }
    }
}

/// A value and the byte offset where it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sp<T> {
    pub(crate) value: T,
    pub(crate) at: Option<usize>,
}

fn start(span: Option<Range<usize>>) -> Option<usize> {
    span.map(|s| s.start)
}

/// A table (`[x]`, `[[x]]`, `{ ... }` or dotted keys).
#[derive(Clone, Copy)]
pub(crate) struct Table<'a> {
    inner: &'a dyn TableLike,
    /// Where the table starts (its header or `{`), for "missing key" messages.
    pub(crate) at: Option<usize>,
    /// How messages place the table: "in [daemon]", "at the top level", ...
    pub(crate) context: &'static str,
}

impl<'a> Table<'a> {
    pub(crate) fn root(doc: &'a ImDocument<&str>) -> Self {
        Table {
            inner: doc.as_table(),
            at: None,
            context: "at the top level",
        }
    }

    /// Reports every key that is not in `allowed`, at the key.
    pub(crate) fn deny_unknown(&self, allowed: &[&str], r: &mut Reporter<'_>) {
        for (key, item) in self.inner.iter() {
            if allowed.contains(&key) {
                continue;
            }
            let at = start(self.inner.key(key).and_then(|k| k.span()))
                .or_else(|| start(item.span()))
                .or(self.at);
            let hint = suggest::closest(key, allowed).map(|s| format!("`{s}`"));
            r.error(
                at,
                format!(
                    "unknown key `{key}` {} {}",
                    self.context,
                    suggest::expected(allowed, hint)
                ),
            );
        }
    }

    /// The value of `key`, if present.
    pub(crate) fn get(&self, key: &'static str) -> Option<Field<'a>> {
        let (k, item) = self.inner.get_key_value(key)?;
        let at = start(item.span()).or_else(|| start(k.span())).or(self.at);
        Some(Field { key, item, at })
    }
}

/// A key's value, read with the type the schema wants.
#[derive(Clone, Copy)]
pub(crate) struct Field<'a> {
    pub(crate) key: &'static str,
    item: &'a Item,
    /// Where the value starts.
    pub(crate) at: Option<usize>,
}

/// "integer 5", "string \"x\"", "a table", ...
fn describe(item: &Item) -> String {
    match item {
        Item::Value(Value::String(s)) => format!("string {:?}", s.value()),
        Item::Value(Value::Integer(i)) => format!("integer {}", i.value()),
        Item::Value(Value::Float(x)) => format!("float {}", x.value()),
        Item::Value(Value::Boolean(b)) => format!("boolean {}", b.value()),
        Item::Value(Value::Datetime(_)) => "a datetime".into(),
        Item::Value(Value::Array(_)) => "an array".into(),
        Item::Value(Value::InlineTable(_)) | Item::Table(_) => "a table".into(),
        Item::ArrayOfTables(_) => "an array of tables".into(),
        Item::None => "nothing".into(),
    }
}

impl<'a> Field<'a> {
    fn wrong_type(&self, expected: &str, r: &mut Reporter<'_>) {
        r.error(
            self.at,
            format!(
                "`{}` must be {expected}, found {}",
                self.key,
                describe(self.item)
            ),
        );
    }

    pub(crate) fn str(&self, r: &mut Reporter<'_>) -> Option<Sp<&'a str>> {
        match self.item.as_str() {
            Some(value) => Some(Sp { value, at: self.at }),
            None => {
                self.wrong_type("a string", r);
                None
            }
        }
    }

    pub(crate) fn int(&self, r: &mut Reporter<'_>) -> Option<Sp<i64>> {
        match self.item.as_integer() {
            Some(value) => Some(Sp { value, at: self.at }),
            None => {
                self.wrong_type("an integer", r);
                None
            }
        }
    }

    /// `true` or `false`.
    pub(crate) fn bool(&self, r: &mut Reporter<'_>) -> Option<Sp<bool>> {
        match self.item.as_bool() {
            Some(value) => Some(Sp { value, at: self.at }),
            None => {
                self.wrong_type("a boolean (true or false)", r);
                None
            }
        }
    }

    /// An integer in `lo..=hi`; else "`{what}` {v} out of range ({lo}..={hi})".
    pub(crate) fn int_in(
        &self,
        what: &str,
        lo: i64,
        hi: i64,
        r: &mut Reporter<'_>,
    ) -> Option<Sp<i64>> {
        let v = self.int(r)?;
        if (lo..=hi).contains(&v.value) {
            Some(v)
        } else {
            r.error(
                v.at,
                format!("{what} {} out of range ({lo}..={hi})", v.value),
            );
            None
        }
    }

    /// A duration string such as "30s".
    pub(crate) fn duration(&self, r: &mut Reporter<'_>) -> Option<Sp<Duration>> {
        let Some(text) = self.item.as_str() else {
            self.wrong_type("a duration string such as \"30s\"", r);
            return None;
        };
        match parse_duration(text) {
            Ok(value) => Some(Sp { value, at: self.at }),
            Err(e) => {
                r.error(self.at, format!("`{}`: {e}", self.key));
                None
            }
        }
    }

    /// One of a fixed set of words; else "unknown {what} \"x\" (expected one of ...)".
    pub(crate) fn keyword<T>(
        &self,
        what: &str,
        names: &[&str],
        from_name: impl Fn(&str) -> Option<T>,
        r: &mut Reporter<'_>,
    ) -> Option<Sp<T>> {
        let s = self.str(r)?;
        if let Some(value) = from_name(s.value) {
            return Some(Sp { value, at: s.at });
        }
        let hint = suggest::closest(s.value, names).map(|c| format!("{c:?}"));
        r.error(
            s.at,
            format!(
                "unknown {what} {:?} {}",
                s.value,
                suggest::expected(names, hint)
            ),
        );
        None
    }

    /// The value if it is a string; reports nothing (for second passes over a tree the
    /// first pass already checked).
    pub(crate) fn item_str(&self) -> Option<&'a str> {
        self.item.as_str()
    }

    /// The tables of an array of tables, reporting nothing (see [`Field::item_str`]).
    pub(crate) fn tables_quiet(&self) -> Option<Vec<Table<'a>>> {
        match self.item {
            Item::ArrayOfTables(aot) => Some(
                aot.iter()
                    .map(|t| Table {
                        inner: t,
                        at: start(t.span()).or(self.at),
                        context: "in [[service.backend]]",
                    })
                    .collect(),
            ),
            Item::Value(Value::Array(array)) => Some(
                array
                    .iter()
                    .filter_map(|v| {
                        v.as_inline_table().map(|t| Table {
                            inner: t,
                            at: start(v.span()).or(self.at),
                            context: "in [[service.backend]]",
                        })
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The value if it is a table, reporting nothing (see [`Field::item_str`]).
    pub(crate) fn item_table(&self, context: &'static str) -> Option<Table<'a>> {
        self.item.as_table_like().map(|inner| Table {
            inner,
            at: self.at,
            context,
        })
    }

    /// A table (`[x]`, `x = { ... }` or dotted keys).
    pub(crate) fn table(&self, context: &'static str, r: &mut Reporter<'_>) -> Option<Table<'a>> {
        match self.item.as_table_like() {
            Some(inner) => Some(Table {
                inner,
                at: self.at,
                context,
            }),
            None => {
                self.wrong_type("a table", r);
                None
            }
        }
    }

    /// An array of strings; elements that are not strings are reported and left out.
    pub(crate) fn strings(&self, r: &mut Reporter<'_>) -> Option<Vec<Sp<&'a str>>> {
        let Some(array) = self.item.as_array() else {
            self.wrong_type("an array of strings", r);
            return None;
        };
        let mut out = Vec::with_capacity(array.len());
        for v in array.iter() {
            let at = start(v.span()).or(self.at);
            match v.as_str() {
                Some(value) => out.push(Sp { value, at }),
                None => {
                    r.error(
                        at,
                        format!(
                            "`{}` must be an array of strings, found {}",
                            self.key,
                            describe(&Item::Value(v.clone()))
                        ),
                    );
                }
            }
        }
        Some(out)
    }

    /// An array of tables: `[[x]]` sections or an array of inline tables. `header` names the
    /// section form for messages, e.g. "[[service]]".
    pub(crate) fn tables(
        &self,
        header: &str,
        context: &'static str,
        r: &mut Reporter<'_>,
    ) -> Option<Vec<Table<'a>>> {
        match self.item {
            Item::ArrayOfTables(aot) => Some(
                aot.iter()
                    .map(|t| Table {
                        inner: t,
                        at: start(t.span()).or(self.at),
                        context,
                    })
                    .collect(),
            ),
            Item::Value(Value::Array(array)) => {
                let mut out = Vec::with_capacity(array.len());
                for v in array.iter() {
                    let at = start(v.span()).or(self.at);
                    match v.as_inline_table() {
                        Some(t) => out.push(Table {
                            inner: t,
                            at,
                            context,
                        }),
                        None => r.error(
                            at,
                            format!(
                                "`{}` must be an array of tables, found {}",
                                self.key,
                                describe(&Item::Value(v.clone()))
                            ),
                        ),
                    }
                }
                Some(out)
            }
            Item::Table(_) | Item::Value(Value::InlineTable(_)) => {
                r.error(
                    self.at,
                    format!(
                        "`{}` must be an array of tables: write {header} (double brackets), found a single table",
                        self.key
                    ),
                );
                None
            }
            _ => {
                self.wrong_type(&format!("an array of tables ({header})"), r);
                None
            }
        }
    }
}
