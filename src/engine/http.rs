//! Outbound HTTP (being written).
