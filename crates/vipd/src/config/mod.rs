//! The TOML config: parsed and validated into a desired state.
