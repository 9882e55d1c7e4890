//! Counters per service, backend and one more label (an outcome, a cause), as nested
//! maps: bumping one that exists borrows the labels and allocates nothing, which matters
//! for the outcome counter bumped on every connection a plane reports. Iterates in the
//! order of the label triple, as the exposition wants.

use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub struct BackendCounts(BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>);

impl BackendCounts {
    /// Adds one to the counter of (`service`, `backend`, `label`).
    pub fn bump(&mut self, service: &str, backend: &str, label: &str) {
        let backends = match self.0.get_mut(service) {
            Some(b) => b,
            None => self.0.entry(service.to_owned()).or_default(),
        };
        let labels = match backends.get_mut(backend) {
            Some(l) => l,
            None => backends.entry(backend.to_owned()).or_default(),
        };
        match labels.get_mut(label) {
            Some(n) => *n += 1,
            None => {
                labels.insert(label.to_owned(), 1);
            }
        }
    }

    /// Keeps only the counters of the (service, backend) pairs `keep` holds for.
    pub fn retain(&mut self, keep: impl Fn(&str, &str) -> bool) {
        self.0.retain(|s, backends| {
            backends.retain(|b, _| keep(s, b));
            !backends.is_empty()
        });
    }

    /// Every counter with its labels, in label order.
    pub fn iter(&self) -> impl Iterator<Item = ((&str, &str, &str), u64)> {
        self.0.iter().flat_map(|(s, backends)| {
            backends.iter().flat_map(move |(b, labels)| {
                labels
                    .iter()
                    .map(move |(l, n)| ((s.as_str(), b.as_str(), l.as_str()), *n))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_iterate_in_label_order_and_retain_drops_whole_backends() {
        let mut c = BackendCounts::default();
        c.bump("web", "b2", "refused");
        c.bump("web", "b1", "refused");
        c.bump("web", "b1", "established");
        c.bump("web", "b1", "established");
        c.bump("api", "b1", "established");
        let all: Vec<_> = c.iter().collect();
        assert_eq!(
            all,
            [
                (("api", "b1", "established"), 1),
                (("web", "b1", "established"), 2),
                (("web", "b1", "refused"), 1),
                (("web", "b2", "refused"), 1),
            ]
        );
        c.retain(|s, b| !(s == "web" && b == "b1"));
        let left: Vec<_> = c.iter().map(|(k, _)| k).collect();
        assert_eq!(
            left,
            [("api", "b1", "established"), ("web", "b2", "refused")]
        );
        c.retain(|s, _| s != "api");
        assert_eq!(c.0.len(), 1, "a service with no backend left goes");
    }
}
