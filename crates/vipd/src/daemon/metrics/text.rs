//! The text exposition format 0.0.4: a family's HELP and TYPE lines, then its samples
//! with escaped label values.

use std::fmt::Write as _;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample's value.
pub(super) trait Value {
    fn write(&self, out: &mut String);
}

impl<T: Value> Value for &T {
    fn write(&self, out: &mut String) {
        (*self).write(out);
    }
}

impl Value for u64 {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for u32 {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for bool {
    fn write(&self, out: &mut String) {
        out.push(if *self { '1' } else { '0' });
    }
}

impl Value for f64 {
    fn write(&self, out: &mut String) {
        out.push_str(&float(*self));
    }
}

/// The exposition being written.
#[derive(Default)]
pub(super) struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts family `name`: its HELP and TYPE lines.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_> {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        Family {
            out: &mut self.out,
            name,
        }
    }

    /// A family of one series without labels.
    pub fn single(&mut self, name: &'static str, kind: Kind, help: &str, value: impl Value) {
        self.family(name, kind, help).sample(&[], value);
    }

    /// A family with one label: a series per (label value, value) of `series`.
    pub fn by_label<K: AsRef<str>, V: Value>(
        &mut self,
        name: &'static str,
        kind: Kind,
        help: &str,
        label: &str,
        series: impl IntoIterator<Item = (K, V)>,
    ) {
        let mut f = self.family(name, kind, help);
        for (k, v) in series {
            f.sample(&[(label, k.as_ref())], v);
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// The samples of one family.
pub(super) struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    /// A sample of the family itself.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Value) {
        self.suffixed("", labels, value);
    }

    /// A sample of a histogram's `_bucket`, `_sum` or `_count` series.
    pub fn suffixed(&mut self, suffix: &str, labels: &[(&str, &str)], value: impl Value) {
        let out = &mut *self.out;
        out.push_str(self.name);
        out.push_str(suffix);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                escape_label_value(out, v);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        value.write(out);
        out.push('\n');
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A float as Prometheus reads it: `1`, `0.005`, `+Inf`, `NaN`.
pub(super) fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        v.to_string()
    }
}
