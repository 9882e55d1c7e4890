//! The ownership record, `state.json` ([`state::from_json`]): what it accepts comes back
//! the same through the JSON it writes ([`state::to_json`]).

use std::path::Path;

use vipd::reconcile::state;

pub fn run(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let path = Path::new("state.json");
    let owned = match state::from_json(path, text) {
        Ok(o) => o,
        Err(e) => return assert!(e.to_string().starts_with("state file state.json")),
    };
    let written = state::to_json(&owned);
    let again = state::from_json(path, &written).expect("a written record reads back");
    assert_eq!(again, owned);
}
