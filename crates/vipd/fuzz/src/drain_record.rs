//! The operator's drain record, `admin.json` ([`admin::from_json`]): what it accepts
//! comes back the same through the JSON it writes.

use std::path::Path;

use vipd::daemon::admin;

pub fn run(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let path = Path::new("admin.json");
    let drains = match admin::from_json(path, text) {
        Ok(d) => d,
        Err(e) => return assert!(e.to_string().starts_with("admin.json: ")),
    };
    let written = serde_json::to_string_pretty(&drains).expect("drains serialize");
    let again = admin::from_json(path, &written).expect("a written record reads back");
    assert_eq!(again, drains);
}
