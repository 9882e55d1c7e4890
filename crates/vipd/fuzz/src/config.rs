//! The config file ([`vipd::config::parse`]): a config, or diagnostics that say where.

pub fn run(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    if let Err(diagnostics) = vipd::config::parse("vipd.toml", text) {
        assert!(!diagnostics.is_empty());
        let lines = text.split('\n').count();
        for d in diagnostics.iter() {
            assert!(d.to_string().starts_with("vipd.toml"), "{d}");
            if let Some(at) = d.location {
                assert!((1..=lines).contains(&at.line) && at.column >= 1, "{d}");
            }
        }
    }
}
