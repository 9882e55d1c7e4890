//! VM test helpers
