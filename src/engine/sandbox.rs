//! The JavaScript sandbox (being written).
